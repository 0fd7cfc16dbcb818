"""Measurements: one registry, one typed settings model and one `measure` method each.

A measurement is what a cell records about its model (`profile`: params and FLOPs; `speed`: inference
throughput and latency; the training issue adds `train`). Each is a class registered with
`@register_measurement`, carrying a pydantic `Settings` model that the suite validates under
`settings.<name>`. `measure` returns plain JSON-able data; rendering happens elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from bench.cells import Cell
    from bench.models import ModelEntry


class Settings(BaseModel):
    """Base of every measurement's settings: unknown keys are errors.

    A cell's config holds its measurements' full settings, and its id hashes that config. A field added
    after cell ids were published is listed in `ID_NEUTRAL_DEFAULTS`: it is left out of the config while
    it holds its default, so existing cells (and committed baselines) keep their ids; set to anything
    else, it is part of the config and the id like any field.
    """

    model_config = ConfigDict(extra="forbid")
    ID_NEUTRAL_DEFAULTS: ClassVar[tuple[str, ...]] = ()

    def config_dump(self) -> dict[str, Any]:
        """The settings as a cell's config records them (see `ID_NEUTRAL_DEFAULTS`)."""
        data = self.model_dump(mode="json")
        defaults = type(self)().model_dump(mode="json") if self.ID_NEUTRAL_DEFAULTS else {}
        for name in self.ID_NEUTRAL_DEFAULTS:
            if data.get(name) == defaults.get(name):
                data.pop(name, None)
        return data


@dataclass
class CellContext:
    """What the runner hands each measurement of one cell: the built model and where it runs."""

    cell: "Cell"
    model: torch.nn.Module
    device: torch.device
    entry: "ModelEntry"
    base_dir: Path = field(default_factory=Path.cwd)  # the suite's folder: relative data paths start here
    artifact_dir: Path | None = None  # where the cell may write files (checkpoint, predictions)
    notes: dict[str, Any] = field(default_factory=dict)
    # Epoch sweeps (bench.epochs): epochs after which `train` also reports another cell's result, with
    # that cell's artifact folder; the results land in `tap_results` (epoch -> train data).
    epoch_taps: dict[int, Path | None] = field(default_factory=dict)
    tap_results: dict[int, dict[str, Any]] = field(default_factory=dict)


class Measurement(ABC):
    """One kind of measurement. Subclasses set `name`, `Settings` and implement `measure`."""

    name: ClassVar[str]
    Settings: ClassVar[type[Settings]] = Settings
    description: ClassVar[str] = ""

    def __init__(self, settings: Settings | dict[str, Any] | None = None) -> None:
        if isinstance(settings, Settings):
            self.settings = settings
        else:
            self.settings = self.Settings.model_validate(settings or {})

    @abstractmethod
    def measure(self, ctx: CellContext) -> dict[str, Any]:
        """Return plain data. Raise `SkipCell` when the cell cannot run here."""


_MEASUREMENTS: dict[str, type[Measurement]] = {}


def register_measurement(cls: type[Measurement]) -> type[Measurement]:
    """Class decorator: add a measurement to the registry under `cls.name`."""
    if cls.name in _MEASUREMENTS:
        raise ValueError(f"measurement {cls.name!r} registered twice")
    _MEASUREMENTS[cls.name] = cls
    return cls


def list_measurements() -> list[str]:
    return list(_MEASUREMENTS)


def get_measurement(name: str) -> type[Measurement]:
    return _MEASUREMENTS[name]
