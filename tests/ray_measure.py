"""A measurement for the Ray executor's tests (imported by tests/test_ray_executor.py, and by each Ray worker,
which imports the modules that registered measurements): on its first attempt at a cell whose seed is
`kill_seed`, it SIGKILLs its own process, the Ray worker, as the kernel's out-of-memory killer or a lost
node would end it; a marker file (holding the killed pid) makes every later attempt run normally."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from bench.measure.base import CellContext, Measurement
from bench.measure.registry import register_measurement
from bench.measure.settings import Settings


class DieOnceSettings(Settings):
    marker_dir: str
    kill_seed: int = 0


@register_measurement
class DieOnce(Measurement):
    name = "die_once"
    Settings = DieOnceSettings

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        marker = Path(self.settings.marker_dir) / f"{ctx.cell.id}.killed"
        if ctx.cell.seed == self.settings.kill_seed and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {"pid": os.getpid(), "killed_pid": int(marker.read_text()) if marker.exists() else None}
