"""The CPU allocator's part in a timing: page faults per call, and pinning glibc's thresholds.

Why this exists. On Linux with glibc, a model's activations are large blocks (resnet18, batch 8, 224 px:
its first activation alone is 25.7 MB). glibc serves a block above its *mmap threshold* with a fresh
mapping and hands the heap's free top back to the kernel above its *trim threshold*; both thresholds
move at run time (each freed mapped block raises them). So whether a forward pass re-faults its
activations' pages (kernel time, counted in the call) depends on what the process allocated and freed
before it, not on the model. Measured here (2-vCPU Xeon, resnet18, batch 8, 224 px, fp32): a timm-method
loop in a fresh process paid 17,028 minor faults and 36 ms of kernel time per call; the same loop run
again after one of bench's cells in the same process paid 0, while bench's cell kept paying 15,600-17,000.
A speed comparison of two loops in one process therefore compares allocator histories as much as methods.

`pin_glibc_thresholds` fixes both thresholds (what `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_`
do at start-up, here by `mallopt` at run time, which also switches the dynamic adjustment off), so blocks
up to the mmap threshold are reused from the heap and nothing is trimmed: with it both loops above paid
0 faults per call. It is process-wide and cannot be undone, so it is for processes that measure
(bench parity), not a library default. `minor_faults` reads the count that shows the effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from typing import Any

# mallopt parameter numbers, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's own ceiling for the dynamic threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest, i.e. never trim in practice


def minor_faults() -> int:
    """Minor page faults of this process so far (getrusage): a page first touched after it was mapped."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        gnu_get_libc_version = libc.gnu_get_libc_version  # only glibc has it (musl, macOS do not)
    except (OSError, AttributeError):
        return None
    gnu_get_libc_version.restype = ctypes.c_char_p
    return libc


def pin_glibc_thresholds(mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES) -> dict[str, Any]:
    """Fix glibc's mmap and trim thresholds for the rest of this process (see the module docstring).

    Returns what was done, to be recorded beside the figures it affects: `{"allocator": "glibc <version>",
    "pinned": True, "mmap_threshold": ..., "trim_threshold": ...}`, or `{"allocator": ..., "pinned": False,
    "reason": ...}` where it cannot be done (not glibc, or mallopt refused)."""
    libc = _libc()
    if libc is None:
        return {"allocator": "not glibc", "pinned": False, "reason": "mallopt thresholds are glibc's; this C library has none"}
    version = f"glibc {libc.gnu_get_libc_version().decode()}"
    ok = libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    if not ok:
        return {"allocator": version, "pinned": False, "reason": "mallopt refused the thresholds"}
    return {"allocator": version, "pinned": True, "mmap_threshold": int(mmap_threshold), "trim_threshold": int(trim_threshold)}
