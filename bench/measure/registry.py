"""The measurement registry: names -> settings schema (light) and implementation (imported on first use).

A measurement is what a cell records about its model (`profile`: params and FLOPs; `speed`: inference
throughput and latency; `train`: training and evaluation). Validating a suite needs each measurement's
settings schema but none of its code, so the built-in measurements are known here by their settings
class and the module that implements them, which `get_measurement` imports when a cell first runs
one; that keeps torch out of `bench plan --no-estimate`. A plugin registers its class with
`@register_measurement` (bench.register_measurement), which puts it in both halves at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bench.measure.settings import ProfileSettings, Settings, SpeedSettings
from bench.measure.train.settings import TrainSettings

if TYPE_CHECKING:
    from bench.measure.base import Measurement


# the built-in measurements, in the order suites list them: name -> the module that registers the class
_BUILTIN_MODULES = {
    "profile": "bench.measure.profile",
    "speed": "bench.measure.speed",
    "train": "bench.measure.train.loop",
}
_BUILTIN_SETTINGS: dict[str, type[Settings]] = {
    "profile": ProfileSettings,
    "speed": SpeedSettings,
    "train": TrainSettings,
}
_MEASUREMENTS: dict[str, type[Measurement]] = {}


def register_measurement(cls: type[Measurement]) -> type[Measurement]:
    """Class decorator: add a measurement to the registry under `cls.name`."""
    if cls.name in _MEASUREMENTS:
        raise ValueError(f"measurement {cls.name!r} registered twice")
    _MEASUREMENTS[cls.name] = cls
    return cls


def list_measurements() -> list[str]:
    """Built-in measurements first, then plugins in registration order."""
    return list(dict.fromkeys([*_BUILTIN_MODULES, *_MEASUREMENTS]))


def settings_schema(name: str) -> type[Settings]:
    """The settings model of a measurement, without importing its implementation."""
    if name in _MEASUREMENTS:
        return _MEASUREMENTS[name].Settings
    return _BUILTIN_SETTINGS[name]


def get_measurement(name: str) -> type[Measurement]:
    """The measurement class; a built-in one's module is imported here, on first use."""
    if name not in _MEASUREMENTS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    return _MEASUREMENTS[name]


def plugin_modules() -> list[str]:
    """Modules outside bench that registered measurements: a child process imports them to know those too."""
    mods = {cls.__module__ for cls in _MEASUREMENTS.values()}
    return sorted(m for m in mods if m != "__main__" and m != "bench" and not m.startswith("bench."))
