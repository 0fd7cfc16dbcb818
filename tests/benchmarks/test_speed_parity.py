"""bench's speed measurement against a reference loop written to timm's benchmark.py method, in one run.

bench.tools.parity.compare interleaves the two (reference, bench, bench, reference, ...) for several rounds and
gives per model the median over rounds of bench img/s / reference img/s, with its spread. Target: within
5% (issue 8). On CUDA the suite's full settings run (224 px, batch 32); on a CPU small ones (64 px,
batch 4, one thread, so that a shared machine's other jobs do not stall a two-thread barrier), well under
a minute on 2 cores.

The 5% is judged on the like-for-like ratios (ParityRow.within: bench's mean rate over the reference's,
and batch / median call time on both). A shared machine moves single rounds by 10% or more either way,
so it is reported (stdout and the benchmark's extra_info) and asserted only with BENCH_STRICT_PARITY=1; what is always asserted is that
both sides measured and that bench is within a factor of 1.5 of the reference, which a harness doing
extra work in its timed region (or timing in train mode, without inference_mode, or unwarmed) fails.

Unlike `bench parity`, this leaves glibc's allocator as it is (pinning the heap would last for every later
test in this process); page faults per call on both sides are reported beside the ratios, so a gap that
comes from one side paying faults the other does not is visible (bench.platform.allocator).
"""

import os
import warnings

import torch

from bench.tools.parity import compare

MODELS = ("efficientnet_b0", "resnet18")


def _settings():
    if torch.cuda.is_available():
        return {
            "device": "cuda",
            "batch_size": 32,
            "resolution": 224,
            "rounds": 5,
            "warmup_iters": 10,
            "bench_iters": 40,
            "speed_settings": None,
            "threads": None,
        }
    return {
        "device": "cpu",
        "batch_size": 4,
        "resolution": 64,
        "rounds": 3,
        "warmup_iters": 10,
        "bench_iters": 30,
        "speed_settings": {"min_time_s": 0.5, "min_repeats": 10},
        "threads": 1,
    }


def test_speed_parity_with_reference_loop(benchmark):
    s = _settings()
    threads = torch.get_num_threads()
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    try:
        rows = benchmark.pedantic(
            compare,
            args=(list(MODELS),),
            kwargs={
                k: s[k]
                for k in (
                    "device",
                    "batch_size",
                    "resolution",
                    "rounds",
                    "warmup_iters",
                    "bench_iters",
                    "speed_settings",
                )
            }
            | {"precisions": ["fp32"]},
            rounds=1,
            iterations=1,
        )
    finally:
        torch.set_num_threads(threads)
    assert [r.model for r in rows] == list(MODELS)
    for r in rows:
        label = f"{r.model} {r.precision} on {r.device} ({r.threads} threads), batch {r.batch_size}, {r.resolution} px"
        benchmark.extra_info[f"{r.model}.{r.precision}"] = {
            "ratio_median": r.ratio,
            "ratio_min": r.ratio_min,
            "ratio_max": r.ratio_max,
            "ratio_iqr": r.ratio_iqr,
            "ratio_of_means": r.ratio_mean,
            "ratio_of_medians": r.ratio_of_medians,
            "bench_img_s": r.bench_img_s,
            "reference_img_s": r.reference_img_s,
            "rounds": r.rounds,
            "settings": label,
            "page_faults_per_call": {"bench": r.bench_faults_per_call, "reference": r.reference_faults_per_call},
        }
        print(
            f"\nparity {label}: bench/reference {r.ratio:.3f} (min {r.ratio_min:.3f}, max {r.ratio_max:.3f}, "
            f"IQR {r.ratio_iqr:.3f}; ratio of means {r.ratio_mean:.3f}, of medians {r.ratio_of_medians:.3f}; bench {r.bench_img_s:.1f} img/s, "
            f"reference {r.reference_img_s:.1f} img/s, {r.rounds} rounds; page faults per call bench "
            f"{r.bench_faults_per_call}, reference {r.reference_faults_per_call})"
        )
        assert len(r.ratios) == r.rounds and r.bench_img_s > 0 and r.reference_img_s > 0
        assert 1 / 1.5 <= r.ratio <= 1.5, f"{label}: bench/reference {r.ratio:.3f}"
        same = f"ratio of means {r.ratio_mean:.3f}, of medians {r.ratio_of_medians:.3f}"
        if not r.within(0.05):
            warnings.warn(f"{label}: {same}, outside 5% on this run (noisy machine?)")
        if os.environ.get("BENCH_STRICT_PARITY"):
            assert r.within(0.05), f"{label}: {same}"
