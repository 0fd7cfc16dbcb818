"""The precisions a cell can run in, by name. The dtypes they map to are bench.platform.device's (torch)."""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
