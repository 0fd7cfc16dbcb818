"""Measurements: what a cell records about its model (profile, speed, train) and the metric catalogue.

Importing this package is light (no torch): the registry knows the built-in measurements by their
settings and imports their code when a cell first runs one (bench.measure.registry).
"""

from bench.measure.base import CellContext, Measurement
from bench.measure.registry import get_measurement, list_measurements, register_measurement, settings_schema
from bench.measure.settings import Settings

__all__ = [
    "CellContext",
    "Measurement",
    "Settings",
    "get_measurement",
    "list_measurements",
    "register_measurement",
    "settings_schema",
]
