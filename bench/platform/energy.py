"""Energy counters: RAPL on Linux CPUs, NVML's total-energy counter on NVIDIA GPUs; deltas over a block of work.

A *source* is one cumulative counter read in joules: RAPL's `energy_uj` per package and per DRAM domain
(`/sys/class/powercap/intel-rapl:N` and its `dram` subzone; the `core`/`uncore` subzones are parts of the
package and are not added again), and NVML's `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver
loaded) for the cell's GPU. A RAPL counter wraps at `max_energy_range_uj`; a delta across one wrap is
`end + range - start`. Where a GPU has a power reading but no energy counter (boards before Volta), a
thread samples the power and integrates it: that figure is an *estimate* and is labelled so.

Where nothing is readable the meter says why (`reason`): no powercap driver (most VMs and containers),
`energy_uj` readable only by root (Linux since 5.10, CVE-2020-8694), no nvidia-ml-py or no driver. Nothing
here fails a run. The measurement around it (idle baseline, J/image) is bench.measure.energy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
POWER_SAMPLE_S = 0.05  # power-only sources: one NVML power reading every 50 ms


def counter_delta(start: int, end: int, max_range: int | None) -> int:
    """The increase of a counter that wraps to 0 after `max_range` (RAPL's max_energy_range_uj)."""
    if end >= start:
        return end - start
    if not max_range:
        raise ValueError(f"counter went back from {start} to {end} and its range is unknown")
    return end + max_range - start


@dataclass
class Source:
    """One energy source: `read()` gives a cumulative reading; `delta(a, b)` the joules between two readings."""

    name: str  # cpu_package, dram, gpu
    where: str  # the file or device it reads
    read: Callable[[], float]
    max_range: float | None = None  # the counter's range, in the reading's unit (RAPL: µJ)
    scale: float = 1.0  # reading unit -> joules
    estimate: bool = False  # power x time, not a counter
    close: Callable[[], None] | None = None

    def delta_j(self, start: float, end: float) -> float:
        return counter_delta(int(start), int(end), int(self.max_range) if self.max_range else None) * self.scale


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _reader(path: Path) -> Callable[[], float]:
    return lambda: float(_read_int(path))


def rapl_sources(root: Path = RAPL_ROOT) -> tuple[list[Source], str | None]:
    """Readable RAPL package and DRAM counters under `root`, or none and the reason."""
    if not root.is_dir():
        return [], f"{root} does not exist: no powercap (RAPL) driver here (a VM or container without it, or not Linux)"
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.is_dir())
    if not zones:
        return [], f"no RAPL zone under {root} (no intel-rapl:N folders: the CPU or kernel exposes no RAPL)"
    sources: list[Source] = []
    problems: list[str] = []
    for zone in zones:
        name = (zone / "name").read_text().strip() if (zone / "name").is_file() else zone.name
        depth = zone.name.count(":")
        if depth == 1 and name.startswith("package"):
            kind = "cpu_package"
        elif depth == 2 and name == "dram":
            kind = "dram"
        else:  # psys (the platform: would count the packages twice), core/uncore (parts of a package)
            continue
        counter = zone / "energy_uj"
        try:
            _read_int(counter)
            max_range: int | None = _read_int(zone / "max_energy_range_uj")
        except PermissionError:
            problems.append(
                f"{counter} is readable only by root (Linux restricts RAPL since CVE-2020-8694): run as root, "
                f"or `sudo chmod a+r {root}/intel-rapl:*/energy_uj {root}/intel-rapl:*/*/energy_uj`"
            )
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{counter}: {exc}")
            continue
        sources.append(
            Source(
                f"{kind}{zone.name.split(':')[1]}",  # cpu_package0, dram0 (the package it belongs to)
                str(counter),
                _reader(counter),
                max_range=max_range,
                scale=1e-6,
            )
        )
    if not sources:
        return [], "; ".join(problems) or f"no package or DRAM zone under {root}"
    return sources, None


def load_nvml() -> tuple[Any, str | None]:
    """pynvml (the nvidia-ml-py package), initialised, or None and why not."""
    try:
        import pynvml  # the nvidia-ml-py package (the gpu extra)
    except ImportError:
        return None, "no NVML: nvidia-ml-py is not installed (pip install 'bench[gpu]')"
    return pynvml, None


def nvml_sources(index: int = 0, nvml: Any = None) -> tuple[list[Source], str | None]:
    """The GPU's total-energy counter (or, without one, its power integrated over time: an estimate)."""
    if nvml is None:
        nvml, reason = load_nvml()
        if nvml is None:
            return [], reason
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no device: say so, never fail the run
        return [], f"NVML unavailable ({exc})"

    def shutdown() -> None:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass

    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:  # noqa: BLE001
        shutdown()
        return [], f"NVML has no GPU {index} ({exc})"
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return [
            Source(
                "gpu",
                f"NVML GPU {index} total energy",
                lambda: float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)),
                scale=1e-3,
                close=shutdown,
            )
        ], None
    except Exception as counter_exc:  # noqa: BLE001 - NOT_SUPPORTED before Volta
        try:
            nvml.nvmlDeviceGetPowerUsage(handle)
        except Exception as power_exc:  # noqa: BLE001
            shutdown()
            return (
                [],
                f"NVML GPU {index} has neither an energy counter ({counter_exc}) nor a power reading ({power_exc})",
            )
        sampler = PowerIntegrator(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000)

        def close() -> None:
            sampler.stop()
            shutdown()

        return [
            Source("gpu", f"NVML GPU {index} power x time", sampler.joules, scale=1.0, estimate=True, close=close)
        ], None


@dataclass
class PowerIntegrator:
    """A thread that samples a power reading (W) and integrates it (trapezoids): cumulative joules."""

    power_w: Callable[[], float]
    period_s: float = POWER_SAMPLE_S
    _joules: float = 0.0
    _last: tuple[float, float] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        now, watts = time.perf_counter(), float(self.power_w())
        with self._lock:
            if self._last is not None:
                self._joules += (now - self._last[0]) * (watts + self._last[1]) / 2
            self._last = (now, watts)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def joules(self) -> float:
        if self._thread is None:
            self._sample()
            self._thread = threading.Thread(target=self._run, name="bench-power", daemon=True)
            self._thread.start()
        self._sample()
        with self._lock:
            return self._joules

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


class EnergyMeter:
    """The energy sources of a cell's device: RAPL for the CPU (always looked for: a GPU cell's host counts
    too), NVML for a CUDA cell's GPU. `sources` empty: `reason` says why nothing is readable."""

    def __init__(
        self,
        device_type: str,
        gpu_index: int = 0,
        *,
        rapl_root: Path = RAPL_ROOT,
        nvml: Any = None,
    ) -> None:
        self.sources, reasons = [], []
        found, why = rapl_sources(rapl_root)
        self.sources += found
        if why:
            reasons.append(f"CPU: {why}")
        if device_type == "cuda":
            found, why = nvml_sources(gpu_index, nvml)
            self.sources += found
            if why:
                reasons.append(f"GPU: {why}")
        self.reasons = reasons
        self.reason = None if self.sources else "; ".join(reasons)

    def read(self) -> dict[str, float]:
        return {s.name: s.read() for s in self.sources}

    def joules(self, start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
        return {s.name: s.delta_j(start[s.name], end[s.name]) for s in self.sources}

    @property
    def estimate(self) -> bool:
        return any(s.estimate for s in self.sources)

    def close(self) -> None:
        for s in self.sources:
            if s.close is not None:
                s.close()


_STAT = Path("/proc/stat")


def cpu_busy_ticks(stat: Path = _STAT) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where unreadable."""
    try:
        values = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)
