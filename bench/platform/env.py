"""The environment a run measured on: versions, CPU, GPU, git commit, and the machine's state at the start
(bench.platform.machine: governor, load, GPU clocks). Plain data for env.json."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import bench
from bench.platform.allocator import describe as describe_allocator
from bench.platform.allocator import setting_label as allocator_label
from bench.platform.machine import capture_machine_state, usable_cores


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def installed_version(distribution: str) -> str | None:
    """The installed version, from the package's metadata: importing timm to read `__version__` took a second
    of every run's start (and of every side and round of `bench gate`)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# Environment variables that change how fast the same code runs: thread pools, the C allocator (glibc's
# MALLOC_* tunables, or jemalloc/tcmalloc through LD_PRELOAD), oneDNN/MKL switches, CUDA's allocator.
# The allocator's tunables alone move a CPU model's latency by a quarter (docs/measurements-log.md, "Figures
# behind constants in the code"), so two runs differing in them are not comparable and env.json says so.
PERF_ENV_PREFIXES = (
    "OMP_",
    "MKL_",
    "KMP_",
    "GOMP_",
    "MALLOC_",
    "GLIBC_TUNABLES",
    "LD_PRELOAD",
    "DNNL_",
    "ONEDNN_",
    "TORCHINDUCTOR_",
    "PYTORCH_CUDA_ALLOC_CONF",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
)


def perf_env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The set performance-relevant environment variables (PERF_ENV_PREFIXES), sorted by name."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    return {k: source[k] for k in sorted(source) if k.startswith(PERF_ENV_PREFIXES)}


def capture_env(
    device: torch.device, *, seeds: list[int] | None = None, cwd: Path | None = None, allocator: str | None = None
) -> dict[str, Any]:
    """Everything needed to judge whether two runs' numbers are comparable. `allocator`: the run's setting
    (bench.platform.allocator), recorded with what the processes that time cells start with."""
    cores_usable = usable_cores()
    env: dict[str, Any] = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "command": sys.argv,
        "bench": bench.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": installed_version("torchvision"),
        "timm": installed_version("timm"),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": cores_usable,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "gpu_name": None,
        "gpu_driver": None,
        "cuda": torch.version.cuda,
        "git_commit": _git_commit(cwd or Path.cwd()),
        "seeds": seeds or [],
        "env_vars": perf_env_vars(),
    }
    if allocator is not None:
        env["allocator"] = {
            "setting": allocator,
            "cells": allocator_label(allocator),
            "runner_at_start": describe_allocator(),  # a cell that measures speed in it pins it (mallopt) first
        }
    env["machine"] = capture_machine_state(device.type, device.index or 0)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_name"] = props.name
        env["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            env["gpu_driver"] = (
                out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
            )
        except (OSError, subprocess.SubprocessError):
            pass
    return env
