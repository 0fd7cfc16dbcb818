"""`speed`: inference throughput, per-batch latency and peak memory at the cell's settings.

Method (as timm's benchmark.py and optimum-benchmark): eval mode, `torch.inference_mode()`, input
pre-allocated on the device, autocast for bf16/fp16, channels_last and torch.compile when the cell asks,
warm-up until successive timings settle (bench.measure.timing; the number discarded is recorded), device
synchronised around each timed batch (CUDA events on a GPU), repeated until a minimum time and count.

What actually ran is recorded beside what the cell asked for: batch size, resolution, precision and the
dtype autocast computed in, memory format. Nothing changes silently: a smaller batch after out of memory
happens only with `oom_fallback: true`, and is recorded (`requested_batch_size`, `fallback`). Throughput is
batch_size / median batch latency (robust on a shared machine); the mean-based figure (images / total time, as timm reports) is kept beside it.

Beside each timed batch a fixed reference matmul is timed (bench.measure.timing.reference_workload), and
`latency_vs_reference` = median over batches of batch time / reference time: a machine-independent-ish
ratio in which a shared machine's load cancels, which is what the regression gate judges best.

On a CPU each timed batch's CPU time (the process's, every thread) is kept beside its wall time:
`cpu_time_median_ms` is the work a batch costs, which other processes' load does not inflate (sharing a
core stretches the wall clock, not the CPU time), and is what the A/B gate decides on on a loaded machine.

On a CPU, `page_faults_per_call` counts the minor page faults per model call: with glibc's default
allocator a call may fault its activations in afresh each time, kernel time that is part of its latency
and depends on the process's allocation history (bench.platform.allocator explains and measures it).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import torch

from bench.core.stats import Stats
from bench.measure.backends import EAGER, check_cell, onnxruntime_call
from bench.measure.base import CellContext, Measurement
from bench.measure.catalogue import (
    CPU_SAMPLES,
    CPU_TIME_MEDIAN,
    DEVICE_USED,
    LATENCY_MEDIAN,
    LATENCY_MIN,
    LATENCY_P90,
    LATENCY_P99,
    LATENCY_SAMPLES,
    LATENCY_STD,
    LATENCY_VS_REFERENCE,
    MEMORY_ADDED,
    PAGE_FAULTS,
    PEAK_MEMORY,
    PEAK_RESERVED,
    REFERENCE_SAMPLES,
    THROUGHPUT,
    THROUGHPUT_MEAN,
)
from bench.measure.compiled import CompileWatch, compile_first_call
from bench.measure.energy import NOT_ASKED, measure_energy, unavailable
from bench.measure.registry import register_measurement
from bench.measure.settings import SpeedSettings
from bench.measure.timing import reference_workload, time_loop
from bench.platform.allocator import describe as allocator_state
from bench.platform.allocator import minor_faults
from bench.platform.device import autocast, evaluating, require_precision, synchronize
from bench.platform.energy import EnergyMeter
from bench.platform.gpu_memory import nvml_used_mb
from bench.platform.memory import PeakMemory, is_out_of_memory


@register_measurement
class Speed(Measurement):
    name = "speed"
    Settings = SpeedSettings
    description = "inference throughput (img/s), batch latency (median, p90, p99, std), peak memory"

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        cell, device = ctx.cell, ctx.device
        require_precision(device, cell.precision)
        batch_size = cell.batch_size
        fallbacks: list[str] = []
        while True:
            try:
                data = self._measure(ctx, batch_size)
                break
            except Exception as exc:  # noqa: BLE001 - only out of memory is retried, and only when asked
                if not (self.settings.oom_fallback and is_out_of_memory(exc) and batch_size > 1):
                    raise
                note = f"batch {batch_size} -> {batch_size // 2} after out of memory ({str(exc).strip().splitlines()[0][:120]})"
                del exc
                fallbacks.append(note)
                batch_size //= 2
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        data["requested_batch_size"] = cell.batch_size
        data["fallback"] = "; ".join(fallbacks) or None
        return data

    def _measure(self, ctx: CellContext, batch_size: int) -> dict[str, Any]:
        cell, device = ctx.cell, ctx.device
        model: Any = ctx.model  # a Module, or the callable torch.compile wraps it in
        memory_format = torch.channels_last if cell.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        x = torch.randn(batch_size, 3, cell.resolution, cell.resolution, device=device)
        x = x.contiguous(memory_format=memory_format)
        s = self.settings
        backend: dict[str, Any] | None = None
        watch: CompileWatch | None = None
        if cell.backend == EAGER:
            call = lambda: model(x)  # noqa: E731 - the one call every loop below times (compiled: replaced below)
        else:  # onnxruntime: exported, checked against eager on a fixed batch, then timed (bench.measure.backends)
            check_cell(cell.precision, cell.channels_last, cell.compile)
            call, backend = onnxruntime_call(
                model, x, device, tolerance=s.backend_tolerance, min_top1=s.backend_min_top1
            )
        reference = reference_workload(device) if s.reference else None
        with evaluating(model), torch.inference_mode(), autocast(device, cell.precision):
            with PeakMemory(device) as peak:
                if cell.compile and cell.backend == EAGER:
                    # the first call compiles: timed apart (bench.measure.compiled)
                    call, probe, watch = compile_first_call(
                        model,
                        x,
                        backend=s.compile_backend,
                        fallback=s.compile_fallback,
                        sync=lambda: synchronize(device),
                    )
                else:
                    probe = call()  # the first call: what actually runs (dtype under autocast), never timed
                out_dtype = str((probe if isinstance(probe, torch.Tensor) else probe[0]).dtype).removeprefix("torch.")
                del probe
                timing = time_loop(
                    call,
                    device=device,
                    warmup_iters=max(s.warmup_iters - 1, 0),
                    min_repeats=s.min_repeats,
                    min_time_s=s.min_time_s,
                    max_repeats=s.max_repeats,
                    max_time_s=s.max_time_s,
                    reference=None if reference is None else _fp32(device, reference),
                    warmup_max_iters=max(s.warmup_max_iters - 1, s.warmup_iters - 1, 0),
                    warmup_window=s.warmup_window,
                    warmup_tolerance=s.warmup_tolerance,
                    warmup_max_time_s=s.warmup_max_time_s,
                    counter=minor_faults if device.type == "cpu" else None,
                    cpu_clock=time.process_time if device.type == "cpu" else None,
                )
                gpu_memory = _gpu_memory(device)  # at the peak's end, before the energy window
            energy = self._energy(call, int(x.shape[0]), device) if s.energy else unavailable(NOT_ASKED)
        st = Stats.of(timing.samples)
        ratios = timing.ratios
        return {
            LATENCY_VS_REFERENCE.key: Stats.of(ratios).median if ratios else None,
            "reference_median_ms": Stats.of(timing.reference_samples).median * 1e3 if ratios else None,
            THROUGHPUT.key: batch_size / st.median,
            THROUGHPUT_MEAN.key: batch_size * st.n / st.total,
            LATENCY_MEDIAN.key: st.median * 1e3,
            # on a CPU: the process's CPU time per batch (every thread), which load elsewhere does not stretch
            CPU_TIME_MEDIAN.key: Stats.of(timing.cpu_samples).median * 1e3 if timing.cpu_samples else None,
            LATENCY_P90.key: st.pct(90) * 1e3,
            LATENCY_P99.key: st.pct(99) * 1e3,
            LATENCY_STD.key: st.stddev * 1e3,
            LATENCY_MIN.key: st.min * 1e3,
            "repeats": st.n,
            "warmup_iters": timing.warmup_iters + 1,  # + the untimed first call
            "warmup_settled": timing.warmup_settled,
            "timing_method": timing.method,
            "batch_size": batch_size,
            "resolution": int(x.shape[-1]),
            "precision": cell.precision,
            "compute_dtype": out_dtype,
            "channels_last": cell.channels_last,
            "memory_format": "channels_last"
            if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            else "contiguous",
            "compile": cell.compile,
            "backend": cell.backend,
            "onnx": backend,  # exporter, opset, provider, and the agreement with eager on a fixed batch
            **(watch.record() if watch is not None else {}),
            "threads": torch.get_num_threads(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if device.type == "cuda" else None,
            "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32) if device.type == "cuda" else None,
            # the kernel's part of a CPU call: pages of activations faulted in afresh (bench.platform.allocator), over the
            # timed calls (the reference matmul beside them writes into a preallocated output)
            PAGE_FAULTS.key: timing.counted / st.n if timing.counted is not None else None,
            "allocator": allocator_state()["allocator"] if device.type == "cpu" else None,  # the run's `allocator`
            PEAK_MEMORY.key: (peak.peak_bytes or 0) / 2**20,
            MEMORY_ADDED.key: ((peak.peak_bytes or 0) - (peak.start_bytes or 0)) / 2**20,
            "memory_kind": peak.kind,
            **gpu_memory,
            LATENCY_SAMPLES.key: list(timing.samples),
            REFERENCE_SAMPLES.key: list(timing.reference_samples),
            CPU_SAMPLES.key: list(timing.cpu_samples),
            "warmup_samples_s": list(timing.warmup_samples),
            **energy,
        }

    def _energy(self, call: Any, images: int, device: torch.device) -> dict[str, Any]:
        """Energy per image over a window of its own, after the timing (bench.measure.energy)."""
        meter = EnergyMeter(device.type, device.index or 0)
        try:

            def step() -> int:
                call()
                return images

            return measure_energy(
                step,
                meter,
                idle_s=self.settings.energy_idle_s,
                min_time_s=self.settings.energy_min_time_s,
                sync=lambda: synchronize(device),
            )
        finally:
            meter.close()


def _gpu_memory(device: torch.device) -> dict[str, Any]:
    """On a GPU: the caching allocator's peak reserved and NVML's used memory beside the peak allocated."""
    if device.type != "cuda":
        return {}
    used, why = nvml_used_mb(device.index or 0)
    return {
        PEAK_RESERVED.key: torch.cuda.max_memory_reserved(device) / 2**20,
        DEVICE_USED.key: used,
        "device_used_unavailable": why,
    }


def _fp32(device: torch.device, fn):
    """The reference runs in fp32 whatever the cell's autocast, so its time means the same in every cell."""

    def run():
        with torch.autocast(device_type=device.type, enabled=False):
            return fn()

    return run
