"""Expanding a suite into cells; a cell's id is a stable hash of its resolved config.

A cell is one model at one point of the matrix, with every value resolved (no "native", no defaults
left implicit), plus the measurements it takes and their full settings. Its id is the SHA-256 of the
canonical JSON of that config, so the same cell gets the same id in any process, on any machine, from
any suite: this is what caching, resume and comparisons key on. The device is not part of the id (it is
recorded in the run's environment), so runs on different hardware can be compared cell by cell.

Dotted-path axes (`train.optimizer`, `model.drop_rate`; see `bench.axes`) put their value where the field
lives, in `settings` or `model_kwargs`, so it is hashed like any setting; `axes` only records which
fields the suite swept and their values (for labels and reports) and is not hashed itself, so a suite
without dotted axes keeps the ids it always had.
"""

from __future__ import annotations

import hashlib
import itertools
import functools
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench import axes as axis_paths
from bench.models import get_entry
from bench.suite import ModelSpec, Suite

ID_VERSION = "bench-cell-v1"
ID_LENGTH = 12


@dataclass(frozen=True)
class Cell:
    """The resolved config of one cell. Plain data; `id` is derived."""

    model: str
    family: str
    resolution: int
    batch_size: int
    precision: str
    channels_last: bool
    compile: bool
    seed: int
    num_classes: int
    measure: tuple[str, ...]
    strategy: str = "none"
    strategy_config: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    weights_sha256: str | None = None
    axes: dict[str, Any] = field(default_factory=dict)  # dotted-path axes swept -> this cell's value (not hashed)
    # torch.backends.cudnn.benchmark for the cell (cuDNN autotunes its convolution algorithms); None: PyTorch's
    # default (off), and then left out of the id, so suites that never set it keep their cell ids
    cudnn_benchmark: bool | None = None

    def identity(self) -> dict[str, Any]:
        """What the id hashes: everything but the weights *path* (its content hash stands in) and `axes`
        (their values are in `settings` / `model_kwargs` already)."""
        data = asdict(self)
        data.pop("weights")
        data.pop("axes")
        if data.get("cudnn_benchmark") is None:
            data.pop("cudnn_benchmark", None)
        data["measure"] = list(self.measure)
        return data

    @functools.cached_property
    def id(self) -> str:
        """Cached: a cell is frozen, and reports over thousands of cells ask for ids many times."""
        return cell_id(self.identity())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measure"] = list(self.measure)
        return {"id": self.id, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        data = {k: v for k, v in data.items() if k != "id"}
        data["measure"] = tuple(data["measure"])
        return cls(**data)

    def label(self) -> str:
        """A short human label: model@res bs=.. precision [+cl] [+compile] seed=.."""
        extras = "".join(
            [" +channels_last" if self.channels_last else "", " +compile" if self.compile else "",
             "" if self.cudnn_benchmark is None else f" cudnn_benchmark={self.cudnn_benchmark}"]
        )
        strategy = f" {self.strategy}" if "train" in self.measure else ""
        swept = "".join(f" {k}={v}" for k, v in self.axes.items())
        return f"{self.model}@{self.resolution} bs={self.batch_size} {self.precision}{extras}{strategy}{swept} seed={self.seed}"

    def value(self, axis: str) -> Any:
        """This cell's value of an axis, built-in (`batch_size`) or dotted (`train.lr`)."""
        return axis_paths.value_of(self, axis)


def canonical_json(data: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def cell_id(identity: dict[str, Any]) -> str:
    digest = hashlib.sha256((ID_VERSION + canonical_json(identity)).encode()).hexdigest()
    return digest[:ID_LENGTH]


@lru_cache(maxsize=64)
def _sha256_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_file(str(path), st.st_size, st.st_mtime_ns)


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
    resolution = spec.resolution or (entry.native_resolution if point["resolution"] == "native" else point["resolution"])
    weights = sha = None
    if spec.weights:
        path = Path(spec.weights)
        path = path if path.is_absolute() else suite.base_dir() / path
        weights, sha = str(path), file_sha256(path)
    dotted = {k: v for k, v in point.items() if axis_paths.is_dotted(k)}
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
        num_classes=suite.num_classes,
        measure=tuple(suite.measure),
        strategy=point["strategy"],
        strategy_config=suite.strategy(point["strategy"]).model_dump(),
        settings={name: suite.measurement_settings(name, spec, extra_settings, dotted) for name in suite.measure},
        model_kwargs={**model_axes, **spec.kwargs},  # the model's own kwargs win over the matrix, as its resolution does
        weights=weights,
        weights_sha256=sha,
        cudnn_benchmark=suite.cudnn_benchmark,
    )
    if dotted:  # record the values in effect (a model's own override may have replaced the matrix's)
        object.__setattr__(cell, "axes", {k: axis_paths.value_of(cell, k) for k in dotted})
    return cell


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
