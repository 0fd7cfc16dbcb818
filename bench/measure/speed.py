"""`speed`: inference throughput, per-batch latency and peak memory at the cell's settings.

Method (as timm's benchmark.py and optimum-benchmark): eval mode, `torch.inference_mode()`, input
pre-allocated on the device, autocast for bf16/fp16, channels_last and torch.compile when the cell asks,
warm-up iterations untimed, device synchronised around each timed batch, repeated until a minimum time
and count. Throughput is batch_size / median batch latency (robust on a shared machine); the mean-based
figure (images / total time, as timm reports) is kept beside it.

Beside each timed batch a fixed reference matmul is timed (bench.timing.reference_workload), and
`latency_vs_reference` = median over batches of batch time / reference time: a machine-independent-ish
ratio in which a shared machine's load cancels, which is what the regression gate judges best.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from bench.device import autocast, precision_unsupported
from bench.errors import SkipCell
from bench.measure.base import CellContext, Measurement, Settings, register_measurement
from bench.memory import PeakMemory
from bench.stats import Stats
from bench.timing import reference_workload, time_loop


class SpeedSettings(Settings):
    warmup_iters: int = Field(3, ge=1, description="untimed calls before timing (the first call is never timed)")
    min_repeats: int = Field(10, ge=1, description="at least this many timed batches")
    min_time_s: float = Field(1.0, ge=0, description="and at least this many seconds of timed batches")
    max_repeats: int = Field(10_000, ge=1)
    max_time_s: float = Field(60.0, gt=0, description="stop timing after this long even if min_repeats is not met")
    reference: bool = Field(True, description="time a fixed reference matmul beside each batch (latency_vs_reference)")


@register_measurement
class Speed(Measurement):
    name = "speed"
    Settings = SpeedSettings
    description = "inference throughput (img/s), batch latency (median, p90, p99, std), peak memory"

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        cell, device = ctx.cell, ctx.device
        reason = precision_unsupported(device, cell.precision)
        if reason:
            raise SkipCell(reason)
        model = ctx.model
        memory_format = torch.channels_last if cell.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        x = torch.randn(cell.batch_size, 3, cell.resolution, cell.resolution, device=device)
        x = x.contiguous(memory_format=memory_format)
        if cell.compile:
            model = torch.compile(model)
        s = self.settings
        reference = reference_workload(device) if s.reference else None
        with torch.inference_mode(), autocast(device, cell.precision), PeakMemory(device) as peak:
            timing = time_loop(
                lambda: model(x),
                device=device,
                warmup_iters=s.warmup_iters,
                min_repeats=s.min_repeats,
                min_time_s=s.min_time_s,
                max_repeats=s.max_repeats,
                max_time_s=s.max_time_s,
                reference=None if reference is None else _fp32(device, reference),
            )
        st = Stats.of(timing.samples)
        ratios = timing.ratios
        return {
            "latency_vs_reference": Stats.of(ratios).median if ratios else None,
            "reference_median_ms": Stats.of(timing.reference_samples).median * 1e3 if ratios else None,
            "throughput_img_s": cell.batch_size / st.median,
            "throughput_mean_img_s": cell.batch_size * st.n / st.total,
            "latency_median_ms": st.median * 1e3,
            "latency_p90_ms": st.pct(90) * 1e3,
            "latency_p99_ms": st.pct(99) * 1e3,
            "latency_std_ms": st.stddev * 1e3,
            "latency_min_ms": st.min * 1e3,
            "repeats": st.n,
            "warmup_iters": timing.warmup_iters,
            "timing_method": timing.method,
            "batch_size": cell.batch_size,
            "resolution": cell.resolution,
            "precision": cell.precision,
            "channels_last": cell.channels_last,
            "compile": cell.compile,
            "threads": torch.get_num_threads(),
            "peak_memory_mb": (peak.peak_bytes or 0) / 2**20,
            "memory_added_mb": ((peak.peak_bytes or 0) - (peak.start_bytes or 0)) / 2**20,
            "memory_kind": peak.kind,
            "samples_s": list(timing.samples),
            "reference_samples_s": list(timing.reference_samples),
        }


def _fp32(device: torch.device, fn):
    """The reference runs in fp32 whatever the cell's autocast, so its time means the same in every cell."""
    def run():
        with torch.autocast(device_type=device.type, enabled=False):
            return fn()
    return run
