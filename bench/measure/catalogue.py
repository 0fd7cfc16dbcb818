"""The metric catalogue: every number a built-in measurement records that something shows, judges or aggregates.

One spec per metric (bench.core.metric.Metric): where it lives, its unit, which direction is better, the
gate's default threshold, a label. The measurements write their results under these keys, the console
tables, report columns, seed aggregation and the regression gate read them from here: no other module
spells a metric's name. A plugin measurement's metrics can be added with `register_metric`.
"""

from __future__ import annotations

from typing import Any

from bench.core.errors import InputError, did_you_mean
from bench.core.metric import EXACT, HIGHER, LOWER, Metric, Threshold

# -- profile: params and FLOPs (deterministic: judged exactly) --------------------------------------------
PARAMS = Metric("profile", "params", "parameters", EXACT, "params", threshold="exact")
PARAMS_TRAINABLE = Metric("profile", "params_trainable", "parameters", EXACT, "trainable params")
MACS = Metric("profile", "macs", "MACs", EXACT, "MACs", threshold="exact")
FLOPS = Metric("profile", "flops", "FLOPs", EXACT, "FLOPs")
GMACS = Metric("profile", "gmacs", "GMACs", LOWER, "GMACs")
GFLOPS = Metric("profile", "gflops", "GFLOPs", LOWER, "GFLOPs")
GMACS_ATTENTION = Metric("profile", "gmacs_attention_handles", "GMACs", LOWER, "GMACs in fused attention")
TRAIN_FLOPS_PER_IMAGE = Metric("profile", "train_flops_per_image", "FLOPs", LOWER, "training FLOPs / image")
TRAIN_GFLOPS_PER_IMAGE = Metric("profile", "train_gflops_per_image", "GFLOPs", LOWER, "training GFLOPs / image")
FLOPS_BATCH_SIZE = Metric("profile", "flops_batch_size", "images", EXACT, "FLOP-count batch")

# -- speed: inference timings (hardware-dependent) --------------------------------------------------------
THROUGHPUT = Metric(
    "speed",
    "throughput_img_s",
    "img/s",
    HIGHER,
    "img/s",
    threshold="10%",
    same_machine_threshold="5%",
    hardware_dependent=True,
    timing=True,
)
THROUGHPUT_MEAN = Metric("speed", "throughput_mean_img_s", "img/s", HIGHER, "img/s (mean)", hardware_dependent=True)
LATENCY_MEDIAN = Metric(
    "speed",
    "latency_median_ms",
    "ms",
    LOWER,
    "p50 ms",
    threshold="10%",
    same_machine_threshold="5%",
    hardware_dependent=True,
    timing=True,
)
# on a CPU, each timed batch's CPU time (the process's, every thread) beside its wall time: the work a batch
# costs, which other processes' load does not inflate (time-sharing a core stretches the wall clock only), so
# the A/B gate decides on it on a loaded machine (bench.gate.paired.settle_wall_clock)
CPU_TIME_MEDIAN = Metric(
    "speed",
    "cpu_time_median_ms",
    "ms",
    LOWER,
    "CPU ms",
    threshold="10%",
    same_machine_threshold="5%",
    hardware_dependent=True,
    timing=True,
    cpu_time=True,
)
CPU_SAMPLES = Metric("speed", "cpu_samples_s", "s", LOWER, "batch CPU times (raw)", hardware_dependent=True)
LATENCY_P90 = Metric(
    "speed", "latency_p90_ms", "ms", LOWER, "p90 ms", threshold="15%", hardware_dependent=True, timing=True
)
LATENCY_P99 = Metric("speed", "latency_p99_ms", "ms", LOWER, "p99 ms", hardware_dependent=True)
LATENCY_STD = Metric("speed", "latency_std_ms", "ms", LOWER, "latency std ms", hardware_dependent=True)
LATENCY_MIN = Metric("speed", "latency_min_ms", "ms", LOWER, "min ms", hardware_dependent=True)
LATENCY_VS_REFERENCE = Metric(
    "speed",
    "latency_vs_reference",
    "ratio",
    LOWER,
    "latency / reference matmul",
    threshold="10%",
    hardware_dependent=True,
    timing=True,
)
# On a GPU the gate judges the peak allocated; on a CPU the peak is the process's RSS (mostly torch itself), so
# it judges the memory the cell added instead and keeps the RSS as context (memory_headline)
PEAK_MEMORY = Metric(
    "speed",
    "peak_memory_mb",
    "MB",
    LOWER,
    "peak MB",
    threshold="10%",
    same_machine_threshold="10%",
    hardware_dependent=True,
)
MEMORY_ADDED = Metric(
    "speed",
    "memory_added_mb",
    "MB",
    LOWER,
    "MB added",
    threshold="25%+4",
    same_machine_threshold="25%+4",
    hardware_dependent=True,
)
# on a GPU, beside the peak allocated (PEAK_MEMORY): the caching allocator's peak and the device's used memory
# (bench.platform.gpu_memory says how they differ)
PEAK_RESERVED = Metric("speed", "peak_reserved_mb", "MB", LOWER, "peak reserved MB", hardware_dependent=True)
DEVICE_USED = Metric("speed", "device_used_mb", "MB", LOWER, "device used MB (NVML)", hardware_dependent=True)
PAGE_FAULTS = Metric(
    "speed", "page_faults_per_call", "faults/call", LOWER, "page faults / call", hardware_dependent=True
)
SPEED_BATCH_SIZE = Metric("speed", "batch_size", "images", EXACT, "batch run")
LATENCY_SAMPLES = Metric("speed", "samples_s", "s", LOWER, "batch latencies (raw)", hardware_dependent=True)
REFERENCE_SAMPLES = Metric(
    "speed", "reference_samples_s", "s", LOWER, "reference matmul times (raw)", hardware_dependent=True
)
INFERENCE_MFU = Metric("speed", "mfu", "fraction", HIGHER, "MFU", hardware_dependent=True)
# energy of inference where a counter is readable (bench.measure.energy): net of an idle baseline
ENERGY_PER_IMAGE = Metric("speed", "energy_j_per_image", "J", LOWER, "J/image", hardware_dependent=True)
IMAGES_PER_JOULE = Metric("speed", "images_per_j", "img/J", HIGHER, "img/J", hardware_dependent=True)
# torch.compile cells (bench.measure.compiled): the first call apart from the steady state, dynamo's counters
COMPILE_FIRST_CALL = Metric(
    "speed", "compile_first_call_s", "s", LOWER, "first compiled call s", hardware_dependent=True
)
RECOMPILATIONS = Metric("speed", "recompilations", "count", LOWER, "recompilations")
GRAPH_BREAKS = Metric("speed", "graph_breaks", "count", LOWER, "graph breaks")

# -- train: accuracy on the evaluated set, and training speed ------------------------------------------------
# Training reproduces bit for bit on one machine at one thread count, not across machines; across them the
# accuracy metrics are judged at `other_hardware_threshold` (docs/measurements-log.md has the measured drift).
ACCURACY = Metric("train", "accuracy", "fraction", HIGHER, "acc", threshold="0.01", other_hardware_threshold="0.25")
TOP5_ACCURACY = Metric("train", "top5_accuracy", "fraction", HIGHER, "top-5 acc")
MACRO_F1 = Metric(
    "train", "macro_f1", "fraction", HIGHER, "macro-F1", threshold="0.01", other_hardware_threshold="0.35"
)
WEIGHTED_F1 = Metric("train", "weighted_f1", "fraction", HIGHER, "weighted F1")
BALANCED_ACCURACY = Metric(
    "train", "balanced_accuracy", "fraction", HIGHER, "balanced acc", threshold="0.01", other_hardware_threshold="0.35"
)
TRAIN_THROUGHPUT = Metric(
    "train", "train_img_s", "img/s", HIGHER, "train img/s", threshold="15%", hardware_dependent=True
)
EPOCHS_RUN = Metric("train", "epochs_run", "epochs", EXACT, "epochs")
BEST_EPOCH = Metric("train", "best_epoch", "epoch", EXACT, "best epoch")
# after training: inference through the real data path (decode, transform, batch) beside the model alone, on the
# test images (bench.measure.train.datapath)
END_TO_END_THROUGHPUT = Metric(
    "train", "end_to_end_img_s", "img/s", HIGHER, "end-to-end img/s", hardware_dependent=True
)
MODEL_ONLY_THROUGHPUT = Metric(
    "train", "model_only_img_s", "img/s", HIGHER, "model-only img/s", hardware_dependent=True
)
END_TO_END_RATIO = Metric(
    "train", "end_to_end_ratio", "ratio", HIGHER, "end-to-end / model-only", hardware_dependent=True
)
DATA_PATH_SHARE = Metric("train", "data_path_share", "fraction", LOWER, "data-path share", hardware_dependent=True)
# energy of the training steps where a counter is readable, net of an idle baseline (bench.measure.energy)
TRAIN_ENERGY_PER_IMAGE = Metric("train", ENERGY_PER_IMAGE.key, "J", LOWER, "training J/image", hardware_dependent=True)
TRAIN_IMAGES_PER_JOULE = Metric(
    "train", IMAGES_PER_JOULE.key, "img/J", HIGHER, "training img/J", hardware_dependent=True
)
TRAINING_MFU = Metric("train", "mfu", "fraction", HIGHER, "training MFU", hardware_dependent=True)
# per-epoch curve values (train.history) and the early-stopping metric
VAL_MACRO_F1 = Metric("train", "val_macro_f1", "fraction", HIGHER, "val macro-F1")
VAL_ACCURACY = Metric("train", "val_accuracy", "fraction", HIGHER, "val accuracy")
VAL_LOSS = Metric("train", "val_loss", "loss", LOWER, "val loss")

_ALL = (
    PARAMS,
    PARAMS_TRAINABLE,
    MACS,
    FLOPS,
    GMACS,
    GFLOPS,
    GMACS_ATTENTION,
    TRAIN_FLOPS_PER_IMAGE,
    TRAIN_GFLOPS_PER_IMAGE,
    FLOPS_BATCH_SIZE,
    THROUGHPUT,
    THROUGHPUT_MEAN,
    LATENCY_MEDIAN,
    CPU_TIME_MEDIAN,
    CPU_SAMPLES,
    LATENCY_P90,
    LATENCY_P99,
    LATENCY_STD,
    LATENCY_MIN,
    LATENCY_VS_REFERENCE,
    PEAK_MEMORY,
    MEMORY_ADDED,
    PEAK_RESERVED,
    DEVICE_USED,
    PAGE_FAULTS,
    SPEED_BATCH_SIZE,
    LATENCY_SAMPLES,
    REFERENCE_SAMPLES,
    INFERENCE_MFU,
    ENERGY_PER_IMAGE,
    IMAGES_PER_JOULE,
    COMPILE_FIRST_CALL,
    RECOMPILATIONS,
    GRAPH_BREAKS,
    ACCURACY,
    TOP5_ACCURACY,
    MACRO_F1,
    WEIGHTED_F1,
    BALANCED_ACCURACY,
    TRAIN_THROUGHPUT,
    EPOCHS_RUN,
    BEST_EPOCH,
    TRAINING_MFU,
    END_TO_END_THROUGHPUT,
    MODEL_ONLY_THROUGHPUT,
    END_TO_END_RATIO,
    DATA_PATH_SHARE,
    TRAIN_ENERGY_PER_IMAGE,
    TRAIN_IMAGES_PER_JOULE,
    VAL_MACRO_F1,
    VAL_ACCURACY,
    VAL_LOSS,
)
CATALOGUE: dict[str, Metric] = {m.path: m for m in _ALL}

# what the gate judges, in the order it reports them: every metric with a default threshold
GATED: tuple[Metric, ...] = (
    THROUGHPUT,
    LATENCY_MEDIAN,
    CPU_TIME_MEDIAN,
    LATENCY_P90,
    LATENCY_VS_REFERENCE,
    PEAK_MEMORY,
    MEMORY_ADDED,
    ACCURACY,
    MACRO_F1,
    BALANCED_ACCURACY,
    TRAIN_THROUGHPUT,
    PARAMS,
    MACS,
)
# what cells that differ only by seed are aggregated over (summary.csv)
AGGREGATED: tuple[Metric, ...] = (MACRO_F1, ACCURACY, BALANCED_ACCURACY, WEIGHTED_F1, TRAIN_THROUGHPUT, THROUGHPUT)
# what early stopping may watch, by its name in the settings
SELECTION: dict[str, Metric] = {m.key: m for m in (VAL_MACRO_F1, VAL_LOSS, VAL_ACCURACY)}


def memory_headline(result: Any) -> Metric:
    """The memory figure that means something for a cell: on a CPU the memory the cell added (the process's RSS
    is mostly torch itself: 627 MB where resnet18 added 24), on a GPU the peak allocated. The other stays as
    context. What the console, the report and the gate show or judge first."""
    kind = (result.measurements.get(PEAK_MEMORY.measurement) or {}).get("memory_kind") or ""
    return MEMORY_ADDED if kind.startswith("cpu") else PEAK_MEMORY


def register_metric(metric: Metric) -> Metric:
    """Add a plugin measurement's metric (shown and aggregated by path; judged when it has a threshold)."""
    if metric.path in CATALOGUE:
        raise ValueError(f"metric {metric.path!r} registered twice")
    CATALOGUE[metric.path] = metric
    return metric


def gated() -> dict[str, Metric]:
    """path -> metric for every metric the gate judges (the built-in ones, then plugins' with a threshold)."""
    extra = [m for m in CATALOGUE.values() if m.threshold is not None and m not in GATED]
    return {m.path: m for m in (*GATED, *extra)}


def thresholds_from(section: dict[str, Any] | None, *, where: str = "regression") -> dict[str, Threshold]:
    """The suite's `regression:` section over the catalogue's defaults; unknown metric names are input errors."""
    judged = gated()
    merged: dict[str, Any] = {path: m.threshold for path, m in judged.items()}
    problems = []
    for key, value in (section or {}).items():
        if key not in judged:
            problems.append(
                InputError(
                    f"unknown metric '{key}'",
                    field=f"{where}.{key}",
                    hint=did_you_mean(key, list(judged)) or f"one of: {', '.join(judged)}",
                )
            )
            continue
        merged[key] = value
    if problems:
        raise InputError.many(problems)
    return {k: Threshold.parse(v, where=f"{where}.{k}") for k, v in merged.items()}


def threshold_option(item: str, *, where: str = "--threshold") -> tuple[str, str]:
    """A command line's METRIC:THRESHOLD (as pytest-benchmark's `--benchmark-compare-fail`), checked."""
    path, sep, text = item.rpartition(":")
    if not sep or path not in CATALOGUE:
        suggestion = did_you_mean(path, list(CATALOGUE)) if sep else None
        raise InputError(
            f"bad threshold '{item}'",
            field=where,
            hint=(f"{suggestion}; " if suggestion else "")
            + f"write METRIC:THRESHOLD, e.g. {THROUGHPUT.path}:5% (metrics: bench/measure/catalogue.py)",
        )
    Threshold.parse(text, where=f"{where} {path}")
    return path, text
