"""Energy per image: counter deltas over a loaded window, less an idle baseline measured just before it.

Method (docs/measurements.md#energy): the sources of bench.platform.energy are read around an *idle* window
(the process sleeps `idle_s`) and then around a *loaded* window (the cell's batch called again and again
for at least `min_time_s`, the device synchronised at its end). Each source's idle power x the loaded
window's length is subtracted from its loaded energy: what is left is the energy the work added. RAPL
counts the whole package, other processes included, so while the process sleeps the CPUs' busy share
(from /proc/stat) is recorded, and above `SHARED_BUSY_SHARE` the result is flagged as from a shared
machine: the baseline then holds only if the others' load stayed the same. J/image = net joules /
images; img/J its inverse. Where nothing is readable the record says why and holds no figure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.measure.catalogue import ENERGY_PER_IMAGE, IMAGES_PER_JOULE
from bench.platform.energy import EnergyMeter, cpu_busy_ticks

SHARED_BUSY_SHARE = 0.05  # other processes kept more than 5% of the CPUs busy while the cell was idle
NOT_ASKED = "not measured (energy: false)"
RAPL_NOTE = "RAPL counts the whole CPU package (every process, and idle power): the idle baseline is subtracted"


@dataclass(frozen=True)
class IdleBaseline:
    """Each source's power while the process slept, and the other processes' share of the CPUs meanwhile."""

    idle_w: dict[str, float]
    window_s: float
    others_busy_share: float | None


def idle_baseline(
    meter: EnergyMeter,
    idle_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
    busy: Callable[[], tuple[int, int] | None] = cpu_busy_ticks,
) -> IdleBaseline:
    """Read the counters around `idle_s` seconds of sleep, beside the work it will be subtracted from."""
    b0, t0, e0 = busy(), clock(), meter.read()
    sleep(idle_s)
    e1, t1, b1 = meter.read(), clock(), busy()
    window = t1 - t0
    idle_w = {k: j / window for k, j in meter.joules(e0, e1).items()} if window > 0 else {}
    others = None
    if b0 is not None and b1 is not None and b1[1] > b0[1]:
        others = (b1[0] - b0[0]) / (b1[1] - b0[1])
    return IdleBaseline(idle_w, window, others)


def energy_record(
    meter: EnergyMeter,
    baseline: IdleBaseline,
    gross: dict[str, float],
    window_s: float,
    images: int,
    *,
    remedy: str = "lengthen energy_min_time_s",
) -> dict[str, Any]:
    """What `gross` joules over `window_s` seconds of work on `images` images come to, net of the idle baseline:
    `energy_j_per_image`, `images_per_j` (None with `unavailable` when nothing is left above idle) and how."""
    net = {k: j - baseline.idle_w.get(k, 0.0) * window_s for k, j in gross.items()}
    total_net = sum(net.values())
    others = baseline.others_busy_share
    shared = others is not None and others > SHARED_BUSY_SHARE
    notes = []
    if any(k.startswith(("cpu_package", "dram")) for k in gross):
        notes.append(RAPL_NOTE)
    if shared:
        notes.append(
            f"shared machine: other processes kept {others:.0%} of the CPUs busy during the idle baseline; "
            "the net energy holds only if their load stayed the same"
        )
    if meter.estimate:
        notes.append("estimate: power x time (the GPU has a power reading but no energy counter)")
    detail: dict[str, Any] = {
        "sources": {s.name: s.where for s in meter.sources},
        "method": "power x time (estimate)" if meter.estimate else "counter deltas",
        "estimate": meter.estimate,
        "unavailable": None,
        "idle_window_s": baseline.window_s,
        "idle_w": baseline.idle_w,
        "window_s": window_s,
        "images": images,
        "gross_j": gross,
        "net_j": net,
        "total_gross_j": sum(gross.values()),
        "total_net_j": total_net,
        "others_cpu_busy_share": others,
        "cpus": os.cpu_count(),
        "shared_machine": shared,
        "notes": notes,
    }
    if total_net <= 0 or images == 0:
        detail["unavailable"] = (
            f"the loaded window's energy ({sum(gross.values()):.3g} J) was not above the idle baseline's "
            f"({sum(baseline.idle_w.values()) * window_s:.3g} J over the same time): {remedy}"
        )
        return {ENERGY_PER_IMAGE.key: None, IMAGES_PER_JOULE.key: None, "energy": detail}
    return {ENERGY_PER_IMAGE.key: total_net / images, IMAGES_PER_JOULE.key: images / total_net, "energy": detail}


def unavailable(reason: str | None) -> dict[str, Any]:
    """The energy fields of a cell where no source is readable (or energy was not asked for), with the reason."""
    return {ENERGY_PER_IMAGE.key: None, IMAGES_PER_JOULE.key: None, "energy": {"unavailable": reason}}


def measure_energy(
    step: Callable[[], int],
    meter: EnergyMeter,
    *,
    idle_s: float,
    min_time_s: float,
    sync: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
    busy: Callable[[], tuple[int, int] | None] = cpu_busy_ticks,
) -> dict[str, Any]:
    """`step()` runs one batch and returns its image count. The speed record's energy fields: the headline
    metrics and an `energy` mapping with how they were measured (or why they were not)."""
    if not meter.sources:
        return unavailable(meter.reason)
    baseline = idle_baseline(meter, idle_s, sleep=sleep, clock=clock, busy=busy)
    images = 0
    e2, t2 = meter.read(), clock()
    while True:
        images += step()
        if clock() - t2 >= min_time_s:
            break
    sync()
    e3, t3 = meter.read(), clock()
    return energy_record(meter, baseline, meter.joules(e2, e3), t3 - t2, images)


class TrainingEnergy:
    """Energy over a training run's steps only (not its validation passes): the counters read around each
    epoch's training loop and added up, net of an idle baseline taken before the first epoch. Unavailable,
    with the reason, where no source is readable or energy was not asked for."""

    def __init__(
        self,
        meter: EnergyMeter | None,
        idle_s: float,
        *,
        reason: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
        busy: Callable[[], tuple[int, int] | None] = cpu_busy_ticks,
    ) -> None:
        self.meter = meter if meter is not None and meter.sources else None
        self.reason = reason or (meter.reason if meter is not None else None)
        self.clock = clock
        self.baseline = (
            idle_baseline(self.meter, idle_s, sleep=sleep, clock=clock, busy=busy) if self.meter is not None else None
        )
        self.gross: dict[str, float] = {}
        self.window_s, self.images = 0.0, 0
        self._start: tuple[dict[str, float], float] | None = None

    def begin(self) -> None:
        if self.meter is not None:
            self._start = (self.meter.read(), self.clock())

    def end(self, images: int) -> None:
        """After the epoch's training loop (the device synchronised): add its energy and images."""
        if self.meter is None or self._start is None:
            return
        e0, t0 = self._start
        for k, j in self.meter.joules(e0, self.meter.read()).items():
            self.gross[k] = self.gross.get(k, 0.0) + j
        self.window_s += self.clock() - t0
        self.images += images
        self._start = None

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()

    def record(self) -> dict[str, Any]:
        if self.meter is None or self.baseline is None:
            return unavailable(self.reason)
        return energy_record(
            self.meter, self.baseline, self.gross, self.window_s, self.images, remedy="train longer (epochs or data)"
        )


def cost_per_million_images(throughput_img_s: float | None, price_per_hour: float | None) -> float | None:
    """What a million images cost at the machine's hourly price, from time alone (no energy needed)."""
    if not throughput_img_s or price_per_hour is None:
        return None
    return price_per_hour / 3600 / throughput_img_s * 1e6


def co2_grams_per_million_images(joules_per_image: float | None, grid_g_per_kwh: float | None) -> float | None:
    """CO2 (g) for a million images at a grid's intensity (gCO2e/kWh), from the measured J/image."""
    if joules_per_image is None or grid_g_per_kwh is None:
        return None
    return joules_per_image * 1e6 / 3.6e6 * grid_g_per_kwh
