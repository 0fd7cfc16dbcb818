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


def train_wall_clock_keys() -> tuple[str, ...]:
    """The keys of a `train` record that depend on the wall clock or the machine: the catalogue's
    hardware-dependent train metrics (throughputs, MFU, the data path's figures, energy) and the figures
    recorded beside them. Two runs of the same training agree on everything else."""
    from bench.measure.catalogue import CATALOGUE

    metrics = tuple(m.key for m in CATALOGUE.values() if m.measurement == "train" and m.hardware_dependent)
    return metrics + (
        "train_time_s",
        "epoch_time_s",
        "achieved_tflop_s",
        "peak_tflop_s",
        "peak_source",
        "data_path",
        "energy",
    )
