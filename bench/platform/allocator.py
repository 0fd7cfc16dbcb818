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

`pin_glibc_heap` takes both moving parts away, by `mallopt` at run time (what `MALLOC_MMAP_MAX_=0` and
`MALLOC_TRIM_THRESHOLD_` do at start-up, `PINNED_HEAP_ENV`): no block is served by its own mapping and the
heap's free top is handed back only above 2 GiB, so once a loop's blocks have been faulted in they are
reused, whatever ran before. Measured, not guaranteed: with it both parity loops paid 0 faults per call
for resnet18 and efficientnet_b0, and activation-like blocks (five 10 MB blocks alive at once) stopped
faulting after two passes; but a lone 40 MB block made and freed in a loop kept faulting every pass in a
test (not understood yet), and glibc's per-thread arenas still map blocks above 64 MiB themselves. So the
fault counts are recorded beside every figure rather than assumed away. Only
fixing the mmap threshold is not enough: glibc caps it at 32 MiB, and a block above it is still mapped
afresh, or not, depending on whether the heap happens to hold a free chunk that large. Measured here, with
the threshold fixed at 32 MiB: efficientnet_b0 (batch 8, 224 px; one activation is 38.5 MB) still paid
9,409 faults per call in bench's loop and 0 in the reference loop run in the same process. It is
process-wide and cannot be undone, so it is for processes that measure (bench parity), not a library
default. `minor_faults` reads the count that shows the effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
from typing import Any

# mallopt parameter numbers, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest, i.e. trim only a free top above 2 GiB

# The same settings for a process started afresh (glibc reads them at start-up): a child that does not fork
# from the pinned process, such as bench.execution.isolation's fork server, needs them in its environment.
PINNED_HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES)}

_PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard", "scudo")


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


def pin_glibc_heap(trim_threshold: int = TRIM_THRESHOLD_BYTES) -> dict[str, Any]:
    """Serve every block from glibc's heap and do not trim it, for the rest of this process (see the module
    docstring).

    Returns what was done, to be recorded beside the figures it affects: `{"allocator": "glibc <version>",
    "pinned": True, "mmap": "off", "trim_threshold": ...}`, or `{"allocator": ..., "pinned": False,
    "reason": ...}` where it cannot be done (not glibc, or mallopt refused)."""
    libc = _libc()
    if libc is None:
        return {
            "allocator": "not glibc",
            "pinned": False,
            "reason": "mallopt's settings are glibc's; this C library has none",
        }
    version = f"glibc {libc.gnu_get_libc_version().decode()}"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _PRELOADED_ALLOCATORS):
        return {
            "allocator": f"LD_PRELOAD {preload}",
            "pinned": False,
            "reason": "another allocator is preloaded: glibc's settings would not govern it",
        }
    if not (libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and libc.mallopt(M_MMAP_MAX, 0) == 1):
        return {"allocator": version, "pinned": False, "reason": "mallopt refused the settings"}
    return {"allocator": version, "pinned": True, "mmap": "off", "trim_threshold": int(trim_threshold)}
