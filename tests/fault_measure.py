"""A measurement for the process-isolation tests (imported by tests/test_fidelity.py, and by each isolated
child, which imports the modules that registered measurements): it ends its process, exhausts its memory,
or records a deterministic checksum of the model's output and the pid it ran in."""

from __future__ import annotations

import os
import resource
import signal
from typing import Any, Literal

import torch

from bench.measure.base import CellContext, Measurement
from bench.measure.registry import register_measurement
from bench.measure.settings import Settings


class FaultSettings(Settings):
    mode: Literal["ok", "exit", "kill", "memory"] = "ok"


@register_measurement
class Fault(Measurement):
    name = "fault"
    Settings = FaultSettings

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        mode = self.settings.mode
        if mode == "exit":
            os._exit(3)
        if mode == "kill":  # what the kernel's out-of-memory killer does
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "memory":
            soft, _ = resource.getrlimit(resource.RLIMIT_AS)
            if soft == resource.RLIM_INFINITY:  # never exhaust a shared machine's memory for real
                raise RuntimeError("refusing to exhaust memory without a memory limit (memory_limit_mb)")
            hoard = []
            for _ in range(10_000):
                hoard.append(torch.ones(16 * 2**20 // 4))  # 16 MiB, touched
            return {"allocated_mb": 16 * len(hoard)}
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, ctx.cell.resolution, ctx.cell.resolution, generator=g)
        with torch.inference_mode():
            out = ctx.model.eval()(x)
        return {"checksum": float(out.double().sum()), "first": float(out[0, 0]), "pid": os.getpid()}
