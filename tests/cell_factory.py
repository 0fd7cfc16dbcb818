"""The tests' hand-made cells: `make_cell(**overrides)` instead of spelling every field of a Cell each time.

A cell's id hashes its fields, so a test that passes the values it used to spell out builds exactly the
cell (and the id) it built before; only the fields that test cares about need naming."""

from __future__ import annotations

from typing import Any

from bench.core.cell import Cell

DEFAULTS: dict[str, Any] = {
    "model": "resnet18",
    "family": "resnet",
    "resolution": 64,
    "batch_size": 8,
    "precision": "fp32",
    "channels_last": False,
    "compile": False,
    "seed": 0,
    "num_classes": 10,
    "measure": ("profile", "speed", "train"),
}


def make_cell(**overrides: Any) -> Cell:
    """A resnet18 cell (family resnet) at 64 px, batch 8, fp32, NCHW, not compiled, seed 0, 10 classes, measuring
    profile, speed and train; any field of Cell given in `overrides` replaces its default (an unknown one raises)."""
    return Cell(**{**DEFAULTS, **overrides})
