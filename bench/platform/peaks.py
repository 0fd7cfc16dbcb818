"""Peak FLOP/s of known accelerators, and model FLOP utilisation (MFU).

MFU = achieved FLOP/s / the device's peak FLOP/s at the precision the work ran in.

- Achieved FLOP/s counts *FLOPs*, and bench's headline counts *MACs*: FLOPs = 2 x MACs. Inference:
  forward FLOPs per image (`profile.flops`, = 2 x `profile.macs`, at batch 1) x img/s (`speed`).
  Training: forward + backward FLOPs per image (`profile.train_flops_per_image`, torch's FlopCounterMode,
  which counts 2 per multiply-add already) x train img/s (`train`).
- Peaks are the vendors' *dense* figures (no 2:4 structured sparsity: datasheets print the sparse figure
  with an asterisk, twice the dense one), at boost clock. Tensor-core peaks need tensor-core shapes and
  dtypes; elementwise work (not in the headline count) and memory-bound layers keep real MFU well below 1.
- Which peak a precision uses: bf16/fp16 -> the tensor-core peak of that dtype (FP32 accumulate, which
  is what autocast's matmuls and convolutions use). fp32 -> the TF32 tensor-core peak when the device has
  one and PyTorch lets convolutions use it (`torch.backends.cudnn.allow_tf32`, True by default), else the
  plain FP32 (non-tensor) peak. The peak used is recorded (`peak_precision`).

The device is matched by the name `torch.cuda.get_device_name` reports (first pattern that matches, so
the more specific ones come first). A GPU not in the table gives MFU None with the reason.

A CPU has no datasheet peak bench could trust (it depends on the SIMD units, the clock under load, the cores
torch may use), so its peak is *measured* (`measured_cpu_peak`): the best FLOP/s of dense square matmuls
(torch.mm) at the cell's precision and the run's torch thread count, each call timed by the process's CPU time
per thread (what the call takes with the cores to itself, so other jobs' load does not lower it much), labelled
"measured" with how it was taken. It is timed once per run and cached per machine (CPU model), torch version, thread count and precision
in `$BENCH_CACHE_DIR/cpu-peaks.json` (default ~/.cache/bench), which keeps the best measurement so far: a shared
machine's load only ever lowers a measured peak (docs/measurements-log.md has one taken under load), so the best
is the closest to what the machine can do, and runs on one machine converge on one peak. MFU against it says how
far a model's work is from the machine's best dense kernel, not from the silicon's theoretical peak: a model
cannot exceed 1 by much (only where its convolutions beat torch.mm).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.core.files import atomic_write_json
from bench.platform.device import DTYPES
from bench.platform.env import _cpu_model

T = 1e12


@dataclass(frozen=True)
class DevicePeak:
    name: str
    pattern: str  # regular expression matched (case-insensitively) against torch.cuda.get_device_name
    fp32: float  # FLOP/s, non-tensor FP32
    tf32: float | None  # tensor-core TF32, dense; None: no TF32 units
    bf16: float | None  # tensor-core BF16 with FP32 accumulate, dense; None: not supported
    fp16: float | None  # tensor-core FP16 with FP32 accumulate, dense
    source: str

    def peak(self, precision: str) -> float | None:
        return {"fp32": self.fp32, "tf32": self.tf32, "bf16": self.bf16, "fp16": self.fp16}[precision]


_H100_DS = (
    "NVIDIA H100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h100/ (sparse figures halved)"
)
_H200_DS = (
    "NVIDIA H200 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h200/ (sparse figures halved)"
)

# Dense peaks (FLOP/s). Order matters: the first pattern that matches the device name wins.
DEVICES: tuple[DevicePeak, ...] = (
    DevicePeak("NVIDIA H200 NVL", r"H200.*NVL", 60 * T, 417.5 * T, 835.5 * T, 835.5 * T, _H200_DS),
    DevicePeak("NVIDIA H200 SXM", r"H200", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T, _H200_DS),
    DevicePeak("NVIDIA H100 NVL", r"H100.*NVL", 60 * T, 417.5 * T, 835.5 * T, 835.5 * T, _H100_DS),
    DevicePeak("NVIDIA H100 PCIe", r"H100.*PCIe", 51 * T, 378 * T, 756.5 * T, 756.5 * T, _H100_DS),
    # "NVIDIA H100 80GB HBM3" is the SXM5 board's name
    DevicePeak("NVIDIA H100 SXM", r"H100", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T, _H100_DS),
    DevicePeak(
        "NVIDIA A100 (SXM4 and PCIe, 40/80 GB)",
        r"A100",
        19.5 * T,
        156 * T,
        312 * T,
        312 * T,
        "NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/a100/ (dense column)",
    ),
    DevicePeak(
        "NVIDIA L4",
        r"\bL4\b",
        30.3 * T,
        60 * T,
        121 * T,
        121 * T,
        "NVIDIA L4 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/l4/ (sparse figures halved)",
    ),
    DevicePeak(
        "NVIDIA A10G",
        r"\bA10G\b",
        35 * T,
        35 * T,
        70 * T,
        70 * T,
        "NVIDIA publishes no A10G datasheet; AWS G5's A10G as tabulated in "
        "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/ (dense)",
    ),
    DevicePeak(
        "NVIDIA A10",
        r"\bA10\b",
        31.2 * T,
        62.5 * T,
        125 * T,
        125 * T,
        "NVIDIA A10 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/products/a10-gpu/ (dense column)",
    ),
    DevicePeak(
        "NVIDIA V100S PCIe",
        r"V100S",
        16.4 * T,
        None,
        None,
        130 * T,
        "NVIDIA V100 datasheet, https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf",
    ),
    DevicePeak(
        "NVIDIA V100 PCIe",
        r"V100.*PCIE",
        14 * T,
        None,
        None,
        112 * T,
        "NVIDIA V100 datasheet, https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf",
    ),
    DevicePeak(
        "NVIDIA V100 SXM2",
        r"V100",
        15.7 * T,
        None,
        None,
        125 * T,
        "NVIDIA V100 datasheet, https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf",
    ),
    DevicePeak(
        "NVIDIA T4",
        r"\bT4\b",
        8.1 * T,
        None,
        None,
        65 * T,
        "NVIDIA T4 datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf (FP16/FP32 mixed)",
    ),
    DevicePeak(
        "NVIDIA GeForce RTX 4090",
        r"RTX 4090",
        82.6 * T,
        82.6 * T,
        165.2 * T,
        165.2 * T,
        "NVIDIA Ada GPU Architecture whitepaper, appendix table (RTX 4090: peak TF32/BF16/FP16 tensor TFLOPS, "
        "FP32 accumulate, dense), https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf",
    ),
)


def match_device(name: str | None) -> DevicePeak | None:
    """The table's entry for a device name as torch reports it, or None."""
    if not name:
        return None
    for dev in DEVICES:
        if re.search(dev.pattern, name, flags=re.IGNORECASE):
            return dev
    return None


def device_name(device: torch.device | str) -> str:
    """What the table is matched against: the CUDA device's name, or the CPU's model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {_cpu_model()}" if device.type == "cpu" else device.type


def peak_for(dev: DevicePeak, precision: str, tf32_allowed: bool | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s, the peak's precision name) used for a cell's precision; see the module docstring."""
    if precision == "fp32":
        allowed = torch.backends.cudnn.allow_tf32 if tf32_allowed is None else tf32_allowed
        if allowed and dev.tf32 is not None:
            return dev.tf32, "tf32"
        return dev.fp32, "fp32"
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}")
    return dev.peak(precision), precision


def mfu(
    achieved_flop_s: float | None,
    name: str | None,
    precision: str,
    tf32_allowed: bool | None = None,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """MFU of `achieved_flop_s` on the device named `name`: {'utilisation': float or None, 'reason', 'peak_flop_s', ...}.
    `measured`: a measured peak (`measured_cpu_peak`), used where the table has no entry for the device (a CPU)."""
    out: dict[str, Any] = {
        "utilisation": None,
        "device_name": name,
        "achieved_tflop_s": None if achieved_flop_s is None else achieved_flop_s / T,
        "peak_tflop_s": None,
        "peak_precision": None,
        "peak_source": None,
        "peak_kind": None,
        "reason": None,
    }
    dev = match_device(name)
    if dev is None and measured is not None:
        out.update(
            peak_device=name,
            peak_precision=measured["precision"],
            peak_source=measured["method"],
            peak_kind="measured",
            peak_tflop_s=measured["flop_s"] / T,
        )
        if achieved_flop_s is None:
            out["reason"] = "no achieved FLOP/s (FLOPs per image or throughput missing)"
        else:
            out["utilisation"] = achieved_flop_s / measured["flop_s"]
        return out
    if dev is None:
        out["reason"] = (
            f"no peak FLOP/s known for {name or 'this device'} (bench.platform.peaks lists NVIDIA data-centre GPUs and the RTX 4090)"
        )
        return out
    peak, which = peak_for(dev, precision, tf32_allowed)
    out.update(peak_device=dev.name, peak_precision=which, peak_source=dev.source, peak_kind="datasheet")
    if peak is None:
        out["reason"] = f"{dev.name} has no {precision} tensor-core peak (not supported in hardware)"
        return out
    out["peak_tflop_s"] = peak / T
    if achieved_flop_s is None:
        out["reason"] = "no achieved FLOP/s (FLOPs per image or throughput missing)"
        return out
    out["utilisation"] = achieved_flop_s / peak
    return out


def mfu_for(device: torch.device | str, precision: str, achieved_flop_s: float | None) -> dict[str, Any]:
    """`mfu` for the device a measurement ran on (a CPU: against its measured peak, `measured_cpu_peak`)."""
    name = device_name(device)
    measured = None
    if torch.device(device).type == "cpu" and match_device(name) is None:
        measured = measured_cpu_peak(precision)
    return mfu(achieved_flop_s, name, precision, measured=measured)


# -- a CPU's measured peak ----------------------------------------------------------------------------------

_MEASURED: dict[str, dict[str, Any]] = {}  # this process's, by cache key
# Set to "1" by a caller whose processes only repeat timings (`bench gate`'s sides, round after round): a cached
# peak is then used as it is instead of timing 1.5 s of matmuls in every process; without a cached one it is timed.
REUSE_ENV = "BENCH_REUSE_CPU_PEAK"


def _cache_path() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "bench")) / "cpu-peaks.json"


def _peak_key(precision: str, threads: int) -> str:
    return f"{_cpu_model()} | torch {torch.__version__} | {threads} threads | {precision}"


def _matmul_times(n: int, dtype: torch.dtype, calls: int, budget_s: float) -> list[float]:
    """Seconds of work per call of `calls` or more dense n x n matmuls (until `budget_s` has passed, at most 200):
    the process's CPU time over the call / torch's threads, i.e. the call's time had its threads had the cores
    to themselves. Wall time would count the time other jobs held the cores (on a shared machine a loaded moment
    measured a tenth of a quiet one's rate); CPU time does not, and a thread that spins waiting for another only
    adds to it (the rate comes out lower, never higher)."""
    threads = torch.get_num_threads()
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # the first call: oneDNN/MKL's set-up, never timed
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 200:
        t0 = time.process_time()
        torch.mm(a, b, out=out)
        times.append((time.process_time() - t0) / threads)
        elapsed = time.perf_counter() - start
        if (len(times) >= calls and elapsed >= budget_s) or elapsed >= 3 * max(budget_s, 0.3):
            break
    return times


def time_cpu_peak(precision: str, *, budget_s: float = 1.5) -> dict[str, Any]:
    """The best FLOP/s of dense square matmuls (torch.mm, preallocated output) at `precision`, with this process's
    torch threads, each call timed by CPU time per thread (`_matmul_times`): the size is the largest up to 2048
    whose best call takes under 50 ms, at least 1024 in fp32 (so that every thread works), smaller for a precision
    the CPU emulates (calls of seconds otherwise); then calls until `budget_s` has passed (at least 3), the best counting."""
    dtype = DTYPES[precision]
    n, best = 512, min(_matmul_times(512, dtype, 3, 0.0))
    while n < 2048 and (best * 8 < 0.05 or (precision == "fp32" and n < 1024)):
        n, best = n * 2, best * 8
    while precision != "fp32" and n > 128 and best > 0.05:  # emulated (fp16 on most CPUs): smaller, or seconds a call
        n, best = n // 2, best / 8
    times = _matmul_times(n, dtype, 3, budget_s)
    flop_s = 2 * n**3 / min(times)
    threads = torch.get_num_threads()
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "flop_s": flop_s,
        "precision": precision,
        "threads": threads,
        "size": n,
        "calls": len(times),
        "clock": "process CPU time / threads",
        "measured_at": when,
        "load_average": load,
        "method": f"measured: the best of {len(times)} dense {n}x{n} {precision} matmuls (torch.mm), {threads} torch "
        f"threads, timed by CPU time per thread, {flop_s / 1e9:.1f} GFLOP/s, {when[:10]}"
        + (f", load average {load:.1f}" if load is not None else ""),
    }


def measured_cpu_peak(precision: str, threads: int | None = None, *, cache: Path | None = None) -> dict[str, Any]:
    """This machine's measured CPU peak at `precision` and `threads` (default: torch's now): timed once per process
    (a run) by `time_cpu_peak` (unless REUSE_ENV is set and a cached one exists), and cached per machine, torch
    version, threads and precision, the cache keeping the best measurement so far: a peak is what the machine can
    do, and a run on a loaded machine only measures less (see the module docstring). Returns the best, with how and
    when it was measured."""
    threads = threads or torch.get_num_threads()
    key = _peak_key(precision, threads)
    if key in _MEASURED:
        return _MEASURED[key]
    path = cache or _cache_path()
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    found = stored.get(key)
    known: dict[str, Any] = {}
    if isinstance(found, dict) and isinstance(found.get("flop_s"), (int, float)) and found.get("method"):
        known = found
    if known and os.environ.get(REUSE_ENV) == "1":
        _MEASURED[key] = known
        return known
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peak = time_cpu_peak(precision)
    finally:
        torch.set_num_threads(before)
    if known and known["flop_s"] >= peak["flop_s"]:
        peak = known
    if peak is not known:
        stored[key] = peak
        try:
            atomic_write_json(path, stored)
        except OSError:  # a read-only cache: the peak still serves this process
            pass
    _MEASURED[key] = peak
    return peak
