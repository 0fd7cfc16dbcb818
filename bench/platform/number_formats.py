"""What each precision can represent: bits, exponent and mantissa widths, and range (torch.finfo).

Plain data for reports: `format_info("bf16")` -> bits 16, exponent 8, mantissa 7, max 3.39e38, smallest
normal 1.18e-38, eps 0.0078 (the gap between 1 and the next representable number), resolution 0.01 (2 decimal digits).
Both halves have 16 bits: fp16 spends them on precision (eps 0.00098) and has little range (max 65504,
smallest normal 6.1e-5: small gradients underflow, hence the GradScaler); bf16 keeps fp32's range with
an eighth of fp16's precision.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.platform.device import DTYPES

# IEEE 754 binary32 / binary16 and Google's bfloat16: (exponent bits, explicit mantissa bits)
LAYOUT = {"fp32": (8, 23), "bf16": (8, 7), "fp16": (5, 10)}


def format_info(precision: str) -> dict[str, Any] | None:
    """The number format of a precision name, or None for an unknown one."""
    dtype = DTYPES.get(precision)
    if dtype is None:
        return None
    fi = torch.finfo(dtype)
    exponent, mantissa = LAYOUT[precision]
    return {
        "precision": precision,
        "dtype": str(dtype).removeprefix("torch."),
        "bits": fi.bits,
        "exponent_bits": exponent,
        "mantissa_bits": mantissa,
        "max": float(fi.max),
        "smallest_normal": float(fi.smallest_normal),
        "eps": float(fi.eps),
        "resolution": fi.resolution,  # about 10^-(decimal digits)
    }
