"""Expanding a suite into cells; a cell's id is a stable hash of its resolved config.

A cell is one model at one point of the matrix, with every value resolved (no "native", no defaults
left implicit), plus the measurements it takes and their full settings. Its id is the SHA-256 of the
canonical JSON of that config, so the same cell gets the same id in any process, on any machine, from
any suite: this is what caching, resume and comparisons key on. The device is not part of the id (it is
recorded in the run's environment), so runs on different hardware can be compared cell by cell.

Dotted-path axes (`train.optimizer`, `model.drop_rate`; see `bench.core.axes`) put their value where the field
lives, in `settings` or `model_kwargs`, so it is hashed like any setting; `axes` only records which
fields the suite swept and their values (for labels and reports) and is not hashed itself, so a suite
without dotted axes keeps the ids it always had.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from bench.core import axes as axis_paths
from bench.core.cell import Cell
from bench.core.files import file_sha256
from bench.measure.train.datacheck import class_names, source_key
from bench.measure.train.settings import TrainSettings
from bench.models.registry import get_entry
from bench.suite.schema import ModelSpec, Suite


def _rule_matches(rule: dict[str, list[Any]], cell: Cell, native: int) -> bool:
    for key, values in rule.items():
        if key == "resolution":
            resolved = [native if v == "native" else v for v in values]
            if cell.resolution not in resolved:
                return False
        elif axis_paths.value_of(cell, key) not in values:
            return False
    return True


def _make_cell(suite: Suite, spec: ModelSpec, point: dict[str, Any], extra_settings: dict | None = None) -> Cell:
    entry = get_entry(spec.name)
    resolution = spec.resolution or (
        entry.native_resolution if point["resolution"] == "native" else point["resolution"]
    )
    weights = sha = None
    if spec.weights:
        path = Path(spec.weights)
        path = path if path.is_absolute() else suite.base_dir() / path
        weights, sha = str(path), file_sha256(path)
    dotted = {k: v for k, v in point.items() if axis_paths.is_dotted(k)}
    settings = {name: suite.measurement_settings(name, spec, extra_settings, dotted) for name in suite.measure}
    model_axes = {axis_paths.parts(k)[1]: v for k, v in dotted.items() if axis_paths.head(k) == axis_paths.MODEL_PREFIX}
    cell = Cell(
        model=spec.name,
        family=entry.family,
        resolution=int(resolution),
        batch_size=int(spec.batch_size or point["batch_size"]),
        precision=point["precision"],
        channels_last=bool(point["channels_last"]),
        compile=bool(point["compile"]),
        seed=int(point["seed"]),
        num_classes=suite.num_classes or _default_num_classes(suite, settings),
        measure=tuple(suite.measure),
        strategy=point["strategy"],
        strategy_config=suite.strategy(point["strategy"]).model_dump(),
        settings=settings,
        model_kwargs={
            **model_axes,
            **spec.kwargs,
        },  # the model's own kwargs win over the matrix, as its resolution does
        weights=weights,
        weights_sha256=sha,
        cudnn_benchmark=suite.cudnn_benchmark,
        backend=point["backend"],
    )
    if dotted:  # record the values in effect (a model's own override may have replaced the matrix's)
        object.__setattr__(cell, "axes", {k: axis_paths.value_of(cell, k) for k in dotted})
    return cell


DEFAULT_NUM_CLASSES = 1000  # a suite that does not train and sets no num_classes: ImageNet's head


def _default_num_classes(suite: Suite, settings: dict[str, dict[str, Any]]) -> int:
    """A suite without `num_classes`: the class count of the cell's training data when it trains (read once
    per source: the CSV's label column, the image folder's folders, a standard source's classes), else 1000."""
    if "train" not in settings:
        return DEFAULT_NUM_CLASSES
    data = TrainSettings.model_validate(settings["train"]).data
    key = source_key(data.kind, data.options, suite.base_dir())
    if key not in suite._class_counts:  # a source that cannot be read raises its own error, naming the file
        suite._class_counts[key] = len(class_names(data.kind, data.options, suite.base_dir()))
    return suite._class_counts[key]


def _points(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def expand(suite: Suite) -> list[Cell]:
    """All cells of a suite, in a deterministic order: models in suite order, then the matrix product
    (axes in schema order), minus `exclude` matches, plus `include` entries; duplicates (same id)
    collapse to their first occurrence. Raises when nothing is left."""
    matrix = suite.matrix.all_axes()
    cells: list[Cell] = []
    for spec in suite.models:
        native = get_entry(spec.name).native_resolution
        for point in _points(matrix):
            cell = _make_cell(suite, spec, point)
            if not any(_rule_matches(rule, cell, spec.resolution or native) for rule in suite.exclude):
                cells.append(cell)
    for rule in suite.include:
        axes = {name: rule.get(name, values[:1]) for name, values in matrix.items()}
        axes.update({k: v for k, v in rule.items() if axis_paths.is_dotted(k) and k not in axes})
        listed = {spec.name for spec in suite.models}
        extra = [ModelSpec(name=name) for name in rule.get("model", []) if name not in listed]
        for spec in [*suite.models, *extra]:
            entry = get_entry(spec.name)
            if "model" in rule and spec.name not in rule["model"]:
                continue
            if "family" in rule and entry.family not in rule["family"]:
                continue
            cells.extend(_make_cell(suite, spec, point, rule.get("settings")) for point in _points(axes))
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(cell.id, cell)
    if not unique:
        raise suite.error(
            "the exclude rules remove every cell",
            field_path=("exclude",),
            hint="narrow the exclude rules or add an include",
        )
    return list(unique.values())
