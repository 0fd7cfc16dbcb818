"""A GPU's memory three ways: what tensors hold, what PyTorch's caching allocator reserved, what the device uses.

Tools mix these up (optimum-benchmark #31, pytorch #37250): `max_memory_allocated` is the peak of live
tensors, `max_memory_reserved` the peak of what the caching allocator took from the driver (allocated +
cached free blocks), and NVML's used memory is the whole device's: every process, the CUDA context, cuDNN
and cuBLAS workspaces. A speed cell on a GPU records all three (bench.measure.speed); NVML is optional
(nvidia-ml-py, the `gpu` extra), and without it the record says why.
"""

from __future__ import annotations

from typing import Any


def nvml_used_mb(index: int = 0, nvml: Any = None) -> tuple[float | None, str | None]:
    """The device's used memory in MiB as NVML reports it, or None and why not."""
    if nvml is None:
        try:
            import pynvml  # the nvidia-ml-py package (the gpu extra)
        except ImportError:
            return None, "no NVML: nvidia-ml-py is not installed (pip install 'bench[gpu]')"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver: say so, never fail the cell
        return None, f"NVML unavailable ({exc})"
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index))
        return info.used / 2**20, None
    except Exception as exc:  # noqa: BLE001
        return None, f"NVML has no memory reading for GPU {index} ({exc})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
