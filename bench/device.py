"""Devices and precisions: which device to use, how to run a precision there, whether it can.

Whether a precision runs is decided by trying it (a tiny conv + linear under autocast) once per device,
not by a hard-coded table: what counts is what this torch build on this machine can do.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch

from bench.errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' asked for, but no CUDA GPU is available", field="device", hint="use 'auto' or 'cpu'")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {name!r}", field="device", hint="use auto, cpu or cuda") from None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a precision ('fp32' = no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


@functools.lru_cache(maxsize=None)
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
        if y.dtype != _DTYPES[precision]:
            return f"autocast to {precision} on {device.type} left outputs in {y.dtype}"
    except Exception as exc:  # the reason is the record
        return f"{precision} autocast is not supported on {device.type}: {type(exc).__name__}: {exc}"
    return None


def precision_unsupported(device: torch.device, precision: str) -> str | None:
    """None when `precision` runs on `device`, else the reason it does not."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    return _probe(device.type, precision)


def cpu_precision_is_native(precision: str) -> bool:
    """Whether this CPU has arithmetic units for `precision` (AVX512-BF16/AMX for bf16, AMX-FP16 for fp16).

    Without them autocast still runs, but emulated: every op converts to and from fp32, which measured
    25-45x slower than fp32 for resnet18 training on AVX2/AVX512 machines here. oneDNN's own probe decides.
    """
    if precision == "fp32":
        return True
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no native path either
        return False


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
