"""Epoch sweeps without retraining: cells that differ only in `train.epochs` share one training run.

A run of E epochs with a given seed is, epoch for epoch, the first E epochs of a longer run with the
same seed (same data order, same augmentation draws, same updates), as long as nothing looks at the
total number of epochs: early stopping is off (the issue's condition) and the learning-rate schedule is
not one that spans the whole run (`cosine`). Such cells form a group; the runner trains its longest
member once, and `train` evaluates the others on the way, after their own last epoch, exactly as their
own run would: the best checkpoint up to then (bench always evaluates the best checkpoint), its
predictions, its curves up to then. Each derived result says which cell trained it
(`train.trained_in_cell`, `train.shared_training`); the trained cell lists the epochs it served
(`train.serves_epochs`). Measurements other than `train` (params, speed) do not depend on the number of
epochs: derived cells carry the trained cell's, marked `shared_with`.
"""

from __future__ import annotations

import copy
from typing import Any

from bench.core import axes as axis_paths
from bench.core.cell import Cell, cell_id
from bench.core.result import CellResult

EPOCHS_AXIS = "train.epochs"


def epochs_of(cell: Cell) -> int:
    return int((cell.settings.get("train") or {}).get("epochs", 0))


def can_share(cell: Cell) -> bool:
    """Can a longer run of this cell's config stand in for it? (train, no early stopping, no cosine)"""
    train = cell.settings.get("train")
    if "train" not in cell.measure or not train:
        return False
    return train.get("early_stopping") is None and train.get("scheduler") != "cosine"


def shared_training_groups(cells: list[Cell]) -> list[list[Cell]]:
    """Groups of cells that differ only in epochs (two distinct epoch counts or more), each sorted by
    epochs: the last one is trained, the others are read off its run."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if can_share(cell):
            groups.setdefault(cell_id(axis_paths.without(cell.identity(), EPOCHS_AXIS)), []).append(cell)
    return [sorted(g, key=epochs_of) for g in groups.values() if len({epochs_of(c) for c in g}) > 1]


def derived_results(group: list[Cell], trained: CellResult, taps: dict[int, dict[str, Any]]) -> list[CellResult]:
    """The results of the group's shorter cells, from the trained cell's result and the train data
    taken at their epochs. A cell whose epoch was not reached (the run failed or was skipped before)
    gets the trained cell's outcome: its own run would have met the same fate at the same step."""
    out = []
    for cell in group:
        if cell.id == trained.id:
            continue
        measurements: dict[str, dict[str, Any]] = {}
        for name in cell.measure:
            data = trained.measurements.get(name)
            if name == "train" and epochs_of(cell) in taps:
                measurements[name] = {"status": "ok", **taps[epochs_of(cell)]}
            elif data is not None:
                measurements[name] = {**copy.deepcopy(data), "shared_with": trained.id}
        result = CellResult(
            cell=cell, status="ok", started_at=trained.started_at, measurements=measurements, duration_s=None
        )
        if not measurements and trained.status != "ok":  # the model could not be built
            result.status, result.reason, result.traceback = trained.status, trained.reason, trained.traceback
        for name in cell.measure:
            data = measurements.get(name, {})
            if data.get("status") == "failed" and result.status != "failed":
                result.status, result.reason, result.traceback = (
                    "failed",
                    f"{name}: {data.get('reason')}",
                    trained.traceback,
                )
            elif data.get("status") == "skipped" and result.status == "ok":
                result.status, result.reason = "skipped", f"{name}: {data.get('reason')}"
        out.append(result)
    return out
