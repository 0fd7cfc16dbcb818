"""Peak memory of a block of work: CUDA max allocated on a GPU, peak RSS on the CPU.

On Linux the process's peak RSS (VmHWM) can be reset by writing "5" to /proc/self/clear_refs, so the
peak is the block's own, not the process's lifetime peak. Where that is not possible the lifetime peak
(getrusage) is reported and the record says so.

On a CPU the block's own figure is `peak - start`. A heap that glibc never trims (the pinned heap of
bench.platform.allocator) keeps the pages an earlier block freed, and a block reusing them adds nothing
to the RSS: so before the start is read, glibc's free memory is handed back (`malloc_trim(0)`, which
releases free pages whatever the trim threshold), and the block's allocations count in full again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def release_free_heap() -> bool:
    """glibc's malloc_trim(0): free heap pages back to the kernel (False where there is no glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0)) or True
    except (OSError, AttributeError):
        return False


def _status_bytes(field: str) -> int | None:
    try:
        match = re.search(field + r":\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


class PeakMemory:
    """Context manager: `with PeakMemory(device) as pm: ...; pm.peak_bytes, pm.start_bytes, pm.kind`.

    `start_bytes` is what was in use when the block began (CUDA allocated / process RSS, which on a CPU
    includes the loaded libraries), so `peak_bytes - start_bytes` is what the block itself added.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: int | None = None
        self.start_bytes: int | None = None
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = int(torch.cuda.memory_allocated(self.device))
            self.kind = "cuda_max_allocated"
        else:
            release_free_heap()
            try:
                _CLEAR_REFS.write_text("5")
                self.kind = "cpu_peak_rss"
                self.start_bytes = _status_bytes("VmRSS")
            except OSError:
                self.kind = "cpu_peak_rss_process_lifetime"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            hwm = _status_bytes("VmHWM") if self.kind == "cpu_peak_rss" else None
            self.peak_bytes = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or a RuntimeError saying so (CPU allocators, MPS, older torch)."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return (
        isinstance(exc, (oom, MemoryError))
        or "out of memory" in str(exc).lower()
        or "can't allocate memory" in str(exc).lower()
    )
