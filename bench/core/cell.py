"""A cell: one model at one point of a suite's matrix, every value resolved; its id hashes that config.

A cell's id is the SHA-256 of the canonical JSON of its resolved config, so the same cell gets the same
id in any process, on any machine, from any suite: this is what caching, resume and comparisons key on.
The device is not part of the id (it is recorded in the run's environment), so runs on different
hardware can be compared cell by cell. Plain data, no torch: every stage after the suite reads cells,
so they live below all of them (the suite's `expand` makes them; bench.suite.expand says how).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from bench.core import axes as axis_paths

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
    # the runtime a speed cell runs its model in (bench.measure.backends): eager PyTorch, the default, is left
    # out of the id, so suites that never name a backend keep their cell ids
    backend: str = "eager"

    def identity(self) -> dict[str, Any]:
        """What the id hashes: everything but the weights *path* (its content hash stands in) and `axes`
        (their values are in `settings` / `model_kwargs` already)."""
        data = self._as_dict()
        data.pop("weights")
        data.pop("axes")
        if data.get("cudnn_benchmark") is None:
            data.pop("cudnn_benchmark", None)
        if data.get("backend") == "eager":
            data.pop("backend", None)
        data["measure"] = list(self.measure)
        return data

    @functools.cached_property
    def id(self) -> str:
        """Cached: a cell is frozen, and reports over thousands of cells ask for ids many times."""
        return cell_id(self.identity())

    def _as_dict(self) -> dict[str, Any]:
        """Every field, nested mappings copied (as dataclasses.asdict, at a tenth of its cost: a plan may hold 10,000 cells)."""
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        data = self._as_dict()
        data["measure"] = list(self.measure)
        return {"id": self.id, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        data = {k: v for k, v in data.items() if k != "id"}
        data["measure"] = tuple(data["measure"])
        return cls(**data)

    def label(self) -> str:
        """A short human label: model@res bs=.. precision [+cl] [+compile] seed=.."""
        extras = "".join(
            [
                " +channels_last" if self.channels_last else "",
                " +compile" if self.compile else "",
                "" if self.cudnn_benchmark is None else f" cudnn_benchmark={self.cudnn_benchmark}",
                "" if self.backend == "eager" else f" backend={self.backend}",
            ]
        )
        strategy = f" {self.strategy}" if "train" in self.measure else ""
        swept = "".join(f" {k}={v}" for k, v in self.axes.items())
        return f"{self.model}@{self.resolution} bs={self.batch_size} {self.precision}{extras}{strategy}{swept} seed={self.seed}"

    def value(self, axis: str) -> Any:
        """This cell's value of an axis, built-in (`batch_size`) or dotted (`train.lr`)."""
        return axis_paths.value_of(self, axis)


def _copy(value: Any) -> Any:
    """A deep copy of plain data (dicts, lists, tuples of JSON values)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def canonical_json(data: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def cell_id(identity: dict[str, Any]) -> str:
    digest = hashlib.sha256((ID_VERSION + canonical_json(identity)).encode()).hexdigest()
    return digest[:ID_LENGTH]
