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
process-wide and cannot be undone, so it is for processes that measure (bench parity, and bench run's
processes that time cells: the suite's `allocator` setting), not a library default. `minor_faults` reads the
count that shows the effect.

The run-level setting (`allocator:` in a suite; not part of cell ids, like `threads`): `pinned` (the default on
a CPU), `default` (glibc as a plain script gets it), or the path of an allocator's shared library (jemalloc,
tcmalloc), preloaded. `process_env` is the environment a fresh process (the fork server) starts with for a
setting; `apply_in_process` does what can be done in a process already running (mallopt); `describe` says
what this process runs with, for env.json, each cell's `speed` record and the report's header.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
from pathlib import Path
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
    global _PINNED_AT_RUN_TIME
    done = {"allocator": version, "pinned": True, "mmap": "off", "trim_threshold": int(trim_threshold)}
    _PINNED_AT_RUN_TIME = done
    return done


# -- the run-level setting ---------------------------------------------------------------------------------

PINNED = "pinned"
DEFAULT = "default"
ALLOCATOR_CHOICES = (PINNED, DEFAULT)

# What this process was started with (glibc reads these at start-up; a fork inherits the state, even where a
# child's os.environ is replaced afterwards), and what `pin_glibc_heap` did since.
_STARTED_WITH = {k: os.environ.get(k) for k in (*PINNED_HEAP_ENV, "LD_PRELOAD")}
_PINNED_AT_RUN_TIME: dict[str, Any] | None = None


def check_setting(value: str) -> str:
    """A suite's `allocator:` value: pinned, default, or an existing shared library (ValueError otherwise)."""
    if value in ALLOCATOR_CHOICES:
        return value
    if ".so" not in Path(value).name:
        raise ValueError(
            f"unknown allocator {value!r} — use pinned, default, or the path of an allocator's shared library "
            "(e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)"
        )
    if not Path(value).is_file():
        raise ValueError(f"allocator library {value} does not exist — install it (jemalloc, tcmalloc) or fix the path")
    return value


def resolve(setting: str | None, device_type: str) -> str | None:
    """The allocator a run uses: the suite's setting, or (unset) `pinned` on a CPU and None elsewhere: a GPU's
    timings do not run through the host's heap, so its processes are left as the environment starts them."""
    if setting:
        return setting
    return PINNED if device_type == "cpu" else None


def process_env(setting: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh process that is to run with `setting`: `pinned` adds PINNED_HEAP_ENV,
    `default` removes it (and any preloaded allocator), a library path is preloaded (LD_PRELOAD)."""
    env = dict(os.environ if environ is None else environ)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and not _is_allocator(p)]
    for key in PINNED_HEAP_ENV:
        env.pop(key, None)
    if setting == PINNED:
        env |= PINNED_HEAP_ENV
    elif setting != DEFAULT:
        preload.insert(0, setting)
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def _is_allocator(path: str) -> bool:
    return any(name in Path(path).name for name in _PRELOADED_ALLOCATORS)


def apply_in_process(setting: str) -> dict[str, Any]:
    """Make this (already running) process run with `setting` as far as it can: `pinned` pins glibc's heap by
    mallopt (once); `default` and a library cannot be applied after start-up (a library is preloaded into the
    processes bench starts). Returns `describe()`."""
    if setting == PINNED and not describe()["pinned"]:
        pin_glibc_heap()
    return describe()


def describe() -> dict[str, Any]:
    """This process's allocator: {"allocator": "pinned" | "default" | the preloaded library, "pinned": bool,
    "how": ...}: what env.json, each cell's `speed` record and the report's header show."""
    preload = [p for p in (_STARTED_WITH.get("LD_PRELOAD") or "").split(":") if p and _is_allocator(p)]
    if preload:
        return {"allocator": preload[0], "pinned": False, "how": "preloaded (LD_PRELOAD) at start-up"}
    if all(_STARTED_WITH.get(k) == v for k, v in PINNED_HEAP_ENV.items()):
        how = " ".join(f"{k}={v}" for k, v in PINNED_HEAP_ENV.items())
        return {"allocator": PINNED, "pinned": True, "how": f"glibc, started with {how}"}
    if _PINNED_AT_RUN_TIME is not None:
        return {
            "allocator": PINNED,
            "pinned": True,
            "how": f"{_PINNED_AT_RUN_TIME['allocator']}, mallopt(M_MMAP_MAX, 0), "
            f"mallopt(M_TRIM_THRESHOLD, {_PINNED_AT_RUN_TIME['trim_threshold']}) at run time",
        }
    set_vars = {k: v for k, v in _STARTED_WITH.items() if v and k in PINNED_HEAP_ENV}
    how = "glibc as is" + (f" (started with {set_vars})" if set_vars else "")
    return {"allocator": DEFAULT, "pinned": False, "how": how}


def label(info: dict[str, Any] | None) -> str:
    """One line for a table or the report's header."""
    if not info:
        return "unknown"
    return f"{info.get('allocator')} ({info.get('how')})"


def setting_label(setting: str | None) -> str:
    """What a setting means for the processes that time cells (the fork server's children), in words."""
    if setting is None or setting == DEFAULT:
        return "default: glibc as is (a fresh process's thresholds, moving at run time)"
    if setting == PINNED:
        return "pinned: glibc, " + " ".join(f"{k}={v}" for k, v in PINNED_HEAP_ENV.items()) + " (no mmap, no trim)"
    return f"{setting}, preloaded (LD_PRELOAD)"
