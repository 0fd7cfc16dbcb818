"""The timing loop: warm-up until stable and excluded, device synchronised, repeated until a minimum time
and count.

This is the method of the best harnesses (timm's benchmark.py, optimum-benchmark): the caller prepares
the model and a pre-allocated input; `time_loop` only calls, synchronises and reads the clock, so its own
overhead per iteration is two clock reads and an append (measured against a plain loop in
tests/benchmarks/test_harness_overhead.py).

Warm-up is not a fixed count: calls are timed and discarded until the last `warmup_window` of them
settle (each within `warmup_tolerance` of their median), at least `warmup_iters` and at most
`warmup_max_iters` calls (or `warmup_max_time_s`). How many were discarded, whether they settled, and the
timing method are recorded: `cuda_events` on a GPU (device time between two events recorded around the
call), `perf_counter` on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.platform.device import synchronize


@dataclass(frozen=True)
class TimingResult:
    """Raw per-call samples (seconds) and how they were taken."""

    samples: tuple[float, ...]
    warmup_iters: int  # warm-up calls made and discarded
    method: str
    reference_samples: tuple[float, ...] = ()  # the reference workload, timed right after each call
    warmup_samples: tuple[float, ...] = ()  # the discarded warm-up calls' times
    warmup_settled: bool | None = None  # None: a fixed warm-up count was asked for
    counted: int | None = None  # with `counter`: its increase over the timed calls (e.g. page faults)
    cpu_samples: tuple[float, ...] = ()  # with `cpu_clock`: each timed call's CPU time (seconds)

    @property
    def ratios(self) -> tuple[float, ...]:
        """Each call's time over the reference's time measured beside it (empty without a reference)."""
        return tuple(a / b for a, b in zip(self.samples, self.reference_samples) if b > 0)


def settled(times: list[float] | tuple[float, ...], window: int, tolerance: float) -> bool:
    """True when the last `window` times are each within `tolerance` (relative) of their median."""
    if window < 1 or len(times) < window:
        return False
    last = sorted(times[-window:])
    median = last[len(last) // 2] if window % 2 else (last[window // 2 - 1] + last[window // 2]) / 2
    if median <= 0:
        return all(t == median for t in last)
    return all(abs(t - median) <= tolerance * median for t in last)


class _PerfCounterTimer:
    """Host clock around the call, the device synchronised before reading it."""

    def __init__(self, device: torch.device, clock: Callable[[], float]) -> None:
        self.device, self.clock = device, clock
        self.method = "perf_counter+cuda.synchronize" if device.type == "cuda" else "perf_counter"

    def __call__(self, fn: Callable[[], Any]) -> float:
        t0 = self.clock()
        fn()
        synchronize(self.device)
        return self.clock() - t0


class _CudaEventTimer:
    """Device time between two CUDA events recorded around the call (host launch overhead that does not
    delay the GPU is not counted), as torch.utils.benchmark and triton's do_bench time GPU work."""

    method = "cuda_events"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], Any]) -> float:
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def timer_for(device: torch.device, clock: Callable[[], float] = time.perf_counter):
    """CUDA events on a GPU, perf_counter elsewhere; `.method` names it."""
    if device.type == "cuda":
        return _CudaEventTimer(device)
    return _PerfCounterTimer(device, clock)


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
    warmup_max_iters: int | None = None,
    warmup_window: int = 3,
    warmup_tolerance: float = 0.05,
    warmup_max_time_s: float = float("inf"),
    clock: Callable[[], float] = time.perf_counter,
    counter: Callable[[], int] | None = None,
    cpu_clock: Callable[[], float] | None = None,
) -> TimingResult:
    """Warm up (below), then time calls until both `min_repeats` calls and `min_time_s` seconds are
    reached (or `max_repeats` / `max_time_s`, whichever first).

    Warm-up: with `warmup_max_iters` None, exactly `warmup_iters` calls; otherwise calls are timed and
    discarded until the last `warmup_window` of them are within `warmup_tolerance` of their median, at
    least `warmup_iters` and at most `warmup_max_iters` calls or `warmup_max_time_s` seconds.

    Each sample is one call bracketed by a device synchronisation (CUDA events on a GPU), so it is the
    call's real latency, not its launch time. With `reference`, that workload is timed the same way right
    after each call (warmed up too); its time does not count towards `min_time_s`. With `counter` (a
    cumulative count such as bench.platform.allocator.minor_faults), its increase over the timed calls is returned
    as `counted`; it is read outside every timed interval. With `cpu_clock` (time.process_time: the process's
    CPU time, every thread), each timed call's CPU time is kept beside its wall time, read just outside it.
    """
    if min_repeats < 1 or warmup_iters < 0:
        raise ValueError("min_repeats must be >= 1 and warmup_iters >= 0")
    timer = timer_for(device, clock)
    warm: list[float] = []
    until_stable = warmup_max_iters is not None
    cap = max(warmup_iters, warmup_max_iters) if warmup_max_iters is not None else warmup_iters
    began = clock()
    while len(warm) < cap:
        if until_stable and len(warm) >= warmup_iters and settled(warm, warmup_window, warmup_tolerance):
            break
        if until_stable and len(warm) >= warmup_iters and clock() - began >= warmup_max_time_s:
            break
        warm.append(timer(fn))
        if reference is not None:
            reference()
    synchronize(device)
    is_settled = settled(warm, warmup_window, warmup_tolerance) if until_stable else None
    samples: list[float] = []
    ref_samples: list[float] = []
    cpu_samples: list[float] = []
    append = samples.append
    spent_on_reference = 0.0
    count_before = counter() if counter is not None else None
    began = clock()
    while True:
        if cpu_clock is None:
            append(timer(fn))
        else:
            c0 = cpu_clock()
            append(timer(fn))
            cpu_samples.append(cpu_clock() - c0)
        if reference is not None:
            t1 = clock()
            ref_samples.append(timer(reference))
            spent_on_reference += clock() - t1
        elapsed = clock() - began - spent_on_reference
        n = len(samples)
        if n >= max_repeats or elapsed >= max_time_s or (n >= min_repeats and elapsed >= min_time_s):
            break
    counted = counter() - count_before if counter is not None and count_before is not None else None
    return TimingResult(
        tuple(samples),
        len(warm),
        timer.method,
        tuple(ref_samples),
        tuple(warm),
        is_settled,
        counted,
        tuple(cpu_samples),
    )
