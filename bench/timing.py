"""The timing loop: warm-up excluded, device synchronised, repeated until a minimum time and count.

This is the method of the best harnesses (timm's benchmark.py, optimum-benchmark): the caller prepares
the model and a pre-allocated input; `time_loop` only calls, synchronises and reads the clock, so its own
overhead per iteration is two clock reads and an append (measured against a plain loop in
tests/benchmarks/test_harness_overhead.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from bench.device import synchronize


@dataclass(frozen=True)
class TimingResult:
    """Raw per-call samples (seconds) and how they were taken."""

    samples: tuple[float, ...]
    warmup_iters: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"samples_s": list(self.samples), "warmup_iters": self.warmup_iters, "method": self.method}


def time_loop(
    fn: Callable[[], Any],
    *,
    device: torch.device,
    warmup_iters: int = 3,
    min_repeats: int = 10,
    min_time_s: float = 1.0,
    max_repeats: int = 10_000,
    max_time_s: float = 60.0,
) -> TimingResult:
    """Call `fn` `warmup_iters` times untimed, then time calls until both `min_repeats` calls and
    `min_time_s` seconds are reached (or `max_repeats` / `max_time_s`, whichever first).

    Each sample is one call bracketed by a device synchronisation, so on a GPU it is the call's real
    latency, not its launch time.
    """
    if min_repeats < 1 or warmup_iters < 0:
        raise ValueError("min_repeats must be >= 1 and warmup_iters >= 0")
    clock = time.perf_counter
    for _ in range(warmup_iters):
        fn()
    synchronize(device)
    samples: list[float] = []
    append = samples.append
    began = clock()
    while True:
        t0 = clock()
        fn()
        synchronize(device)
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - began
        n = len(samples)
        if n >= max_repeats or elapsed >= max_time_s or (n >= min_repeats and elapsed >= min_time_s):
            break
    method = "perf_counter+cuda.synchronize" if device.type == "cuda" else "perf_counter"
    return TimingResult(tuple(samples), warmup_iters, method)
