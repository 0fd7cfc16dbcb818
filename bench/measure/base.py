"""What a measurement is: a class with a typed `Settings` model and one `measure` method (the registry is
bench.measure.registry).

A measurement is what a cell records about its model (`profile`: params and FLOPs; `speed`: inference
throughput and latency; the training issue adds `train`). Each is a class registered with
`@register_measurement`, carrying a pydantic `Settings` model that the suite validates under
`settings.<name>`. `measure` returns plain JSON-able data; rendering happens elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from bench.measure.settings import Settings as BaseSettings  # inside Measurement, `Settings` is its ClassVar

if TYPE_CHECKING:
    import torch

    from bench.core.cell import Cell
    from bench.models import ModelEntry


@dataclass
class CellContext:
    """What the runner hands each measurement of one cell: the built model and where it runs."""

    cell: Cell
    model: torch.nn.Module
    device: torch.device
    entry: ModelEntry
    base_dir: Path = field(default_factory=Path.cwd)  # the suite's folder: relative data paths start here
    artifact_dir: Path | None = None  # where the cell may write files (checkpoint, predictions)
    notes: dict[str, Any] = field(default_factory=dict)
    # Epoch sweeps (bench.execution.epochs): epochs after which `train` also reports another cell's result, with
    # that cell's artifact folder; the results land in `tap_results` (epoch -> train data).
    epoch_taps: dict[int, Path | None] = field(default_factory=dict)
    tap_results: dict[int, dict[str, Any]] = field(default_factory=dict)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class Measurement(ABC, Generic[SettingsT]):
    """One kind of measurement. Subclasses set `name`, `Settings` and implement `measure`.

    A subclass may name its settings type, `class Speed(Measurement[SpeedSettings])`, to have `self.settings`
    typed as such (it must then set `Settings = SpeedSettings`); a plain `Measurement` subclass gets `Any`."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseSettings]] = BaseSettings
    description: ClassVar[str] = ""
    settings: SettingsT

    def __init__(self, settings: BaseSettings | dict[str, Any] | None = None) -> None:
        # SettingsT is the subclass's `Settings` (a ClassVar cannot be typed with a type variable)
        if isinstance(settings, BaseSettings):
            self.settings = cast(SettingsT, settings)
        else:
            self.settings = cast(SettingsT, self.Settings.model_validate(settings or {}))

    @abstractmethod
    def measure(self, ctx: CellContext) -> dict[str, Any]:
        """Return plain data. Raise `SkipCell` when the cell cannot run here."""
