"""Devices and precisions: which device to use, how to run a precision there, whether it can.

Whether a precision runs is decided by trying it (a tiny conv + linear under autocast) once per device,
not by a hard-coded table: what counts is what this torch build on this machine can do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from bench.core.errors import InputError, SkipCell
from bench.core.precision import PRECISIONS

# the one precision -> dtype table (autocast computes in these; fp32 means no autocast)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            "device 'cuda' asked for, but no CUDA GPU is available", field="device", hint="use 'auto' or 'cpu'"
        )
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {name!r}", field="device", hint="use auto, cpu or cuda") from None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a precision ('fp32' = no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


@functools.cache
def _probe(device_type: str, precision: str) -> str | None:
    if precision == "fp32":
        return None
    device = torch.device(device_type)
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} does not support bf16"
    try:
        conv = torch.nn.Conv2d(3, 4, 3).to(device)
        lin = torch.nn.Linear(4, 2).to(device)
        x = torch.randn(2, 3, 8, 8, device=device)
        with torch.inference_mode(), autocast(device, precision):
            y = lin(conv(x).mean((2, 3)))
        if y.dtype != DTYPES[precision]:
            return f"autocast to {precision} on {device.type} left outputs in {y.dtype}"
    except Exception as exc:  # the reason is the record
        return f"{precision} autocast is not supported on {device.type}: {type(exc).__name__}: {exc}"
    return None


def require_precision(device: torch.device, precision: str) -> None:
    """Skip the cell (SkipCell, with the reason) when `precision` cannot run on `device`."""
    reason = precision_unsupported(device, precision)
    if reason:
        raise SkipCell(reason)


def precision_unsupported(device: torch.device, precision: str) -> str | None:
    """None when `precision` runs on `device`, else the reason it does not."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    return _probe(device.type, precision)


# A precision trains "natively" on a CPU when oneDNN says it has the units *and* a training step measured
# under it is at most this many times an fp32 one: oneDNN's flag alone once let an emulated fp16 cell run
# for twelve minutes (docs/measurements-log.md, "Reduced-precision training on a CPU", has the figures).
NATIVE_MAX_SLOWDOWN = 3.0


def cpu_precision_is_native(precision: str) -> bool:
    """Whether this CPU trains `precision` at native speed (AVX512-BF16/AMX for bf16, AMX-FP16 for fp16).

    Without those units autocast still runs, but emulated: every op converts to and from fp32. oneDNN's
    own probe says whether the units exist; a measured training step (`cpu_precision_slowdown`) says
    whether torch's kernels use them.
    """
    if precision == "fp32":
        return True
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        supported = bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no native path either
        return False
    return supported and cpu_precision_slowdown(precision) <= NATIVE_MAX_SLOWDOWN


@functools.cache
def cpu_precision_slowdown(precision: str) -> float:
    """A small conv block's training step (forward, backward) under `precision` autocast, over the same
    step in fp32, on the CPU: median of 3 timed steps each after one untimed. Once per process, a fraction
    of a second (docs/measurements-log.md)."""
    import time

    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
        x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))

    def step_s(prec: str) -> float:
        times = []
        for i in range(4):
            t0 = time.perf_counter()
            with autocast(torch.device("cpu"), prec):
                out = net(x)
            nn.functional.cross_entropy(out.float(), y).backward()
            if i:
                times.append(time.perf_counter() - t0)
        return sorted(times)[1]

    base = step_s("fp32")
    return step_s(precision) / base if base > 0 else 1.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """eval() for the duration, restoring the previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
