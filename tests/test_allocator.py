"""bench.allocator: glibc's moving thresholds make a loop re-fault its memory forever; with the heap pinned, it stops.

Each case runs in a fresh child process: pinning is process-wide and permanent, and the point is what a
process's allocation history does, so the test process's own history must not leak in."""

import json
import subprocess
import sys

import pytest

from bench import allocator

# Five 10 MB blocks alive at once, then all freed, eight times over: like a forward pass's activations.
# glibc by default raises its mmap threshold to the largest block freed (10 MB) and its trim threshold to
# twice that, so the heap's free top (50 MB) is handed back to the kernel after every pass and faulted in again.
PASSES = """
import json, sys, torch
from bench.allocator import minor_faults, pin_glibc_heap
pinned = pin_glibc_heap() if sys.argv[1] == "pinned" else None
faults = []
for _ in range(8):
    before = minor_faults()
    blocks = [torch.ones(10 * 2**18) for _ in range(5)]
    del blocks
    faults.append(minor_faults() - before)
print(json.dumps({"pinned": pinned, "faults": faults}))
"""

glibc_only = pytest.mark.skipif(allocator._libc() is None, reason="mallopt's settings only exist with glibc")


def _passes(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PASSES, mode], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_default_glibc_refaults_every_pass_and_a_pinned_heap_stops_it():
    default = _passes("default")["faults"]
    # 50 MB is 12,800 pages of 4 KiB; by default every pass, the last ones included, faults most of them again
    assert all(f > 5_000 for f in default[-3:]), default
    run = _passes("pinned")
    assert run["pinned"]["pinned"] is True and run["pinned"]["allocator"].startswith("glibc ")
    assert run["pinned"]["mmap"] == "off" and run["pinned"]["trim_threshold"] == 2**31 - 1
    assert run["faults"][0] > 5_000  # the first pass still maps its pages once
    assert all(f < 100 for f in run["faults"][-3:]), run["faults"]  # then the heap keeps them: nothing to fault


def test_minor_faults_counts_pages_first_touched():
    import mmap

    size = 16 * 2**20
    region = mmap.mmap(-1, size)  # a fresh anonymous mapping: no page is backed until it is touched
    before = allocator.minor_faults()
    for offset in range(0, size, 4096):
        region[offset] = 1
    faulted = allocator.minor_faults() - before
    region.close()
    assert faulted >= size // (2 * 2**20)  # at least one fault per 2 MiB, even if huge pages back it
    assert faulted <= size // 4096 + 64  # at most one per 4 KiB page (plus the interpreter's own)


def test_pinning_says_why_not_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    assert allocator.pin_glibc_heap() == {"allocator": "not glibc", "pinned": False,
                                                "reason": "mallopt's settings are glibc's; this C library has none"}
