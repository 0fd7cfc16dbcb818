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
from typing import Any

from bench.measure.catalogue import ENERGY_PER_IMAGE, IMAGES_PER_JOULE
from bench.platform.energy import EnergyMeter, cpu_busy_ticks

SHARED_BUSY_SHARE = 0.05  # other processes kept more than 5% of the CPUs busy while the cell was idle
RAPL_NOTE = "RAPL counts the whole CPU package (every process, and idle power): the idle baseline is subtracted"


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
        return {ENERGY_PER_IMAGE.key: None, IMAGES_PER_JOULE.key: None, "energy": {"unavailable": meter.reason}}
    # idle baseline, beside the cell
    b0, t0, e0 = busy(), clock(), meter.read()
    sleep(idle_s)
    e1, t1, b1 = meter.read(), clock(), busy()
    idle_window = t1 - t0
    idle_w = {k: j / idle_window for k, j in meter.joules(e0, e1).items()} if idle_window > 0 else {}
    # loaded window
    images = 0
    e2, t2 = meter.read(), clock()
    while True:
        images += step()
        if clock() - t2 >= min_time_s:
            break
    sync()
    e3, t3 = meter.read(), clock()
    window = t3 - t2
    gross = meter.joules(e2, e3)
    net = {k: j - idle_w.get(k, 0.0) * window for k, j in gross.items()}
    total_net = sum(net.values())
    others = None
    if b0 is not None and b1 is not None and b1[1] > b0[1]:
        others = (b1[0] - b0[0]) / (b1[1] - b0[1])
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
        "idle_window_s": idle_window,
        "idle_w": idle_w,
        "window_s": window,
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
            f"({sum(idle_w.values()) * window:.3g} J over the same time): lengthen energy_min_time_s"
        )
        return {ENERGY_PER_IMAGE.key: None, IMAGES_PER_JOULE.key: None, "energy": detail}
    return {ENERGY_PER_IMAGE.key: total_net / images, IMAGES_PER_JOULE.key: images / total_net, "energy": detail}


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
