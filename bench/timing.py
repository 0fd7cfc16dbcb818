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
    reference_samples: tuple[float, ...] = ()  # the reference workload, timed right after each call

    def to_dict(self) -> dict[str, Any]:
        return {"samples_s": list(self.samples), "warmup_iters": self.warmup_iters, "method": self.method,
                "reference_samples_s": list(self.reference_samples)}

    @property
    def ratios(self) -> tuple[float, ...]:
        """Each call's time over the reference's time measured beside it (empty without a reference)."""
        return tuple(a / b for a, b in zip(self.samples, self.reference_samples) if b > 0)


def reference_workload(device: torch.device, size: int = 512) -> Callable[[], Any]:
    """A fixed fp32 matmul (2 x 512^3 = 268 MFLOP, about 3 ms on 2 CPU cores) on the cell's device.

    Timed right after each model call, it sees the same machine state (other processes, frequency,
    steal time), so model time / reference time cancels most of the load of a shared machine: the
    nightly suite's latencies moved 20-50% between identical runs here. A matmul goes through BLAS, not
    the convolution backend, so a regression in how a model runs still shows in the ratio.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device)
    b = torch.randn(size, size, generator=g).to(device)
    out = torch.empty(size, size, device=device)
    return lambda: torch.mm(a, b, out=out)


def time_loop(
    fn: Callable[[], Any],
    *,
    device: torch.device,
    warmup_iters: int = 3,
    min_repeats: int = 10,
    min_time_s: float = 1.0,
    max_repeats: int = 10_000,
    max_time_s: float = 60.0,
    reference: Callable[[], Any] | None = None,
) -> TimingResult:
    """Call `fn` `warmup_iters` times untimed, then time calls until both `min_repeats` calls and
    `min_time_s` seconds are reached (or `max_repeats` / `max_time_s`, whichever first).

    Each sample is one call bracketed by a device synchronisation, so on a GPU it is the call's real
    latency, not its launch time. With `reference`, that workload is timed the same way right after
    each call (warmed up too); its time does not count towards `min_time_s`.
    """
    if min_repeats < 1 or warmup_iters < 0:
        raise ValueError("min_repeats must be >= 1 and warmup_iters >= 0")
    clock = time.perf_counter
    for _ in range(warmup_iters):
        fn()
        if reference is not None:
            reference()
    synchronize(device)
    samples: list[float] = []
    ref_samples: list[float] = []
    append = samples.append
    spent_on_reference = 0.0
    began = clock()
    while True:
        t0 = clock()
        fn()
        synchronize(device)
        t1 = clock()
        append(t1 - t0)
        if reference is not None:
            reference()
            synchronize(device)
            t2 = clock()
            ref_samples.append(t2 - t1)
            spent_on_reference += t2 - t1
            t1 = t2
        elapsed = t1 - began - spent_on_reference
        n = len(samples)
        if n >= max_repeats or elapsed >= max_time_s or (n >= min_repeats and elapsed >= min_time_s):
            break
    method = "perf_counter+cuda.synchronize" if device.type == "cuda" else "perf_counter"
    return TimingResult(tuple(samples), warmup_iters, method, tuple(ref_samples))
