"""Measurement registry; importing this package registers the built-in measurements."""

from bench.measure import profile as _profile  # noqa: F401
from bench.measure import speed as _speed  # noqa: F401
from bench.measure import train as _train  # noqa: F401
from bench.measure.base import (
    CellContext,
    Measurement,
    Settings,
    get_measurement,
    list_measurements,
    register_measurement,
)

__all__ = ["CellContext", "Measurement", "Settings", "get_measurement", "list_measurements", "register_measurement"]
