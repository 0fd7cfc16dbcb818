"""The machine's state when a run starts, and what in it makes timings less trustworthy.

Recorded in env.json under `machine`: the CPU frequency governor (per core, from cpufreq), current and
min/max frequency, load average and usable cores; on a GPU (through NVML, the `nvidia-ml-py` package,
optional: `pip install bench[gpu]`) SM and memory clocks against their maxima, applications clocks, the
power limit and draw, temperature, the active clock-event (throttle) reasons and whether clocks look
locked. `warnings(state)` turns that into the lines a report shows: a busy machine, a governor other
than `performance`, GPU clocks not locked, active throttling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CPUFREQ = Path("/sys/devices/system/cpu")
BUSY_LOAD_PER_CORE = 0.5  # load average above half the usable cores at start: another job is running

# NVML clock-event (throttle) reason bits, as in nvml.h
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
_HARMLESS = {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; a container or `taskset` narrows it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this OS
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_state(root: Path = CPUFREQ) -> dict[str, Any]:
    governors: dict[str, int] = {}
    cur: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for cpu in sorted(root.glob("cpu[0-9]*")):
        freq = cpu / "cpufreq"
        gov = _read(freq / "scaling_governor")
        if gov:
            governors[gov] = governors.get(gov, 0) + 1
        for name, into in (("scaling_cur_freq", cur), ("scaling_min_freq", lo), ("scaling_max_freq", hi)):
            value = _read(freq / name)
            if value and value.isdigit():
                into.append(int(value) / 1000)
    if not cur:  # no cpufreq (many VMs): the kernel's per-core "cpu MHz"
        try:
            cur = [
                float(line.split(":")[1])
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("cpu MHz")
            ]
        except (OSError, ValueError, IndexError):
            cur = []
    load: list[float] | None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    usable = usable_cores()
    return {
        "cpu_governor": next(iter(governors)) if len(governors) == 1 else (governors or None),
        "cpu_freq_mhz": sum(cur) / len(cur) if cur else None,
        "cpu_freq_min_mhz": min(lo) if lo else None,
        "cpu_freq_max_mhz": max(hi) if hi else None,
        "load_average": load,
        "cores_usable": usable,
    }


def gpu_state(index: int = 0, nvml: Any = None, pci_bus_id: str | None = None) -> dict[str, Any]:
    """NVML's view of one GPU; {"nvml": "unavailable (...)"} without nvidia-ml-py or a driver."""
    if nvml is None:
        try:
            import pynvml  # the nvidia-ml-py package
        except ImportError:
            return {"nvml": "unavailable (pip install nvidia-ml-py)"}
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no device: say so, never fail the run
        return {"nvml": f"unavailable ({exc})"}
    try:
        h = None
        if pci_bus_id:  # the CUDA device's own board, whatever CUDA_VISIBLE_DEVICES renumbered
            try:
                h = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            except Exception:  # noqa: BLE001
                h = None
        h = h if h is not None else nvml.nvmlDeviceGetHandleByIndex(index)

        def q(fn, *args):
            try:
                return fn(h, *args)
            except Exception:  # noqa: BLE001 - NOT_SUPPORTED on some boards
                return None

        sm, mem = nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM
        reasons_fn = (
            getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        bits = q(reasons_fn)
        reasons = None if bits is None else [name for bit, name in THROTTLE_REASONS.items() if bits & bit]
        boost = q(nvml.nvmlDeviceGetAutoBoostedClocksEnabled)
        auto_boost = None if boost is None else bool(boost[0])
        power_limit = q(nvml.nvmlDeviceGetEnforcedPowerLimit)
        power = q(nvml.nvmlDeviceGetPowerUsage)
        state = {
            "nvml": "ok",
            "sm_clock_mhz": q(nvml.nvmlDeviceGetClockInfo, sm),
            "sm_clock_max_mhz": q(nvml.nvmlDeviceGetMaxClockInfo, sm),
            "mem_clock_mhz": q(nvml.nvmlDeviceGetClockInfo, mem),
            "mem_clock_max_mhz": q(nvml.nvmlDeviceGetMaxClockInfo, mem),
            "applications_sm_clock_mhz": q(nvml.nvmlDeviceGetApplicationsClock, sm),
            "power_limit_w": None if power_limit is None else power_limit / 1000,
            "power_draw_w": None if power is None else power / 1000,
            "temperature_c": q(nvml.nvmlDeviceGetTemperature, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
            "throttle_reasons": reasons,
            "auto_boost": auto_boost,
        }
        # Locked: clocks pinned by a user setting (nvidia-smi -lgc / -ac shows as the applications-clocks
        # reason) or auto boost off; unknown when NVML reports neither.
        if reasons is not None and "applications_clocks_setting" in reasons:
            state["clocks_locked"] = True
        else:
            state["clocks_locked"] = None if auto_boost is None else not auto_boost
        return state
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _pci_bus_id(index: int) -> str | None:
    try:
        import torch

        p = torch.cuda.get_device_properties(index)
        # torch's stubs for _CudaDeviceProperties lack the pci_* fields it has at runtime
        return f"{p.pci_domain_id:08X}:{p.pci_bus_id:02X}:{p.pci_device_id:02X}.0"  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - older torch, no GPU
        return None


def capture_machine_state(device_type: str, gpu_index: int = 0) -> dict[str, Any]:
    state = cpu_state()
    if device_type == "cuda":
        state["gpu"] = gpu_state(gpu_index, pci_bus_id=_pci_bus_id(gpu_index))
    return state


def warnings(state: dict[str, Any], device_type: str | None = None) -> list[str]:
    """What a report should say about the machine's state at the start of a run (empty: nothing)."""
    out = []
    load, cores = state.get("load_average"), state.get("cores_usable")
    if load and cores and load[0] > BUSY_LOAD_PER_CORE * cores:
        out.append(
            f"the machine was busy at the start: load average {load[0]:.2f} on {cores} usable cores "
            "(another job was running); timings may be slow and noisy"
        )
    gov = state.get("cpu_governor")
    if device_type != "cuda" and isinstance(gov, str) and gov != "performance":
        out.append(
            f"CPU frequency governor is '{gov}', not 'performance': the clock follows the load, so timings drift"
        )
    elif device_type != "cuda" and isinstance(gov, dict):
        out.append(f"CPU cores run different frequency governors ({', '.join(f'{k} x{v}' for k, v in gov.items())})")
    gpu = state.get("gpu")
    if isinstance(gpu, dict):
        if gpu.get("nvml") != "ok":
            out.append(f"GPU clocks, power and throttling not recorded: NVML {gpu.get('nvml')}")
        else:
            if gpu.get("clocks_locked") is not True:
                out.append(
                    "GPU clocks are not locked"
                    + (" (auto boost on)" if gpu.get("auto_boost") else " (or NVML cannot tell)")
                    + ": clocks drift with temperature and power between runs (nvidia-smi -lgc locks them)"
                )
            active = [r for r in gpu.get("throttle_reasons") or [] if r not in _HARMLESS]
            if active:
                out.append(f"GPU clocks were being held down at the start: {', '.join(active)}")
    return out
