"""A metric's spec and a regression threshold: what the metric catalogue (bench.measure.catalogue) is made of.

A `Metric` says what one number a measurement records means: where it lives (`measurement.key`), its
unit, which direction is better, the regression threshold it is judged at by default, a label for
tables, whether it depends on the hardware, and whether it is a timing (judged on repeated samples).
Everything that shows or judges a metric (console tables, report columns, aggregation, the gate) reads
these specs instead of spelling the metric's name again. Thresholds are parsed from short strings, as
pytest-benchmark's `--benchmark-compare-fail` does: '10%', '0.01', '5%+0.01', 'exact', 'off'.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from bench.core.errors import InputError

HIGHER, LOWER, EXACT = "higher", "lower", "exact"


@dataclass(frozen=True)
class Metric:
    """One number a measurement records."""

    measurement: str
    key: str
    unit: str
    direction: str  # HIGHER or LOWER is better; EXACT: any change is a change
    label: str
    threshold: str | None = None  # the gate's default; None: not judged
    other_hardware_threshold: str | None = None  # judged this coarsely across machines (training drift)
    # the same-machine A/B gate's default (bench gate): a timing judged on per-round paired ratios, or a
    # hardware-dependent figure compared on both sides' medians; None: reported there, not judged
    same_machine_threshold: str | None = None
    hardware_dependent: bool = False
    timing: bool = False  # judged with its repeat distributions
    # a CPU time (the process's, all threads): other processes' load does not inflate it as it does a wall-clock
    # time, so on a loaded machine the A/B gate decides on it (bench.gate.paired.settle_wall_clock)
    cpu_time: bool = False

    @property
    def path(self) -> str:
        """`measurement.key`, as results.csv's columns and the suite's `regression:` section name it."""
        return f"{self.measurement}.{self.key}"

    def of(self, result: Any) -> Any:
        """This metric's value in a cell result (None when the cell did not record it)."""
        return (result.measurements.get(self.measurement) or {}).get(self.key)

    def number(self, result: Any) -> float | None:
        """The value as a float, or None when absent or not a number."""
        value = self.of(result)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_THRESHOLD = re.compile(
    r"^\s*(?:(?P<rel>\d+(?:\.\d+)?)\s*%)?\s*(?:(?:\+|,)?\s*(?P<abs>\d+(?:\.\d+)?(?:e-?\d+)?))?\s*$", re.I
)


@dataclass(frozen=True)
class Threshold:
    """How far a metric may move in its bad direction: relative and/or absolute (both: the larger)."""

    relative: float | None = None
    absolute: float | None = None
    exact: bool = False
    off: bool = False  # reported, never a regression

    @classmethod
    def parse(cls, text: str | float | int, *, where: str = "regression") -> Threshold:
        """'10%', '0.01', '5%+0.01', 'exact', 'off' (reported, not judged), or a number (absolute)."""
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls(absolute=float(text))
        s = str(text).strip()
        if s.lower() == "exact":
            return cls(exact=True)
        if s.lower() == "off":
            return cls(off=True)
        m = _THRESHOLD.match(s)
        if not s or not m or (m.group("rel") is None and m.group("abs") is None):
            raise InputError(
                f"bad threshold {text!r}",
                field=where,
                hint="write '10%' (relative), '0.01' (absolute), '5%+0.01' (both), 'exact' or 'off'",
            )
        return cls(
            relative=float(m.group("rel")) / 100 if m.group("rel") else None,
            absolute=float(m.group("abs")) if m.group("abs") else None,
        )

    def allowed(self, baseline: float) -> float:
        """The largest change in the bad direction that is still not a regression."""
        if self.exact:
            return 0.0
        if self.off:
            return math.inf
        return max(abs(baseline) * (self.relative or 0.0), self.absolute or 0.0)

    def __str__(self) -> str:
        if self.exact:
            return "exact"
        if self.off:
            return "off"
        parts = ([f"{self.relative * 100:g}%"] if self.relative is not None else []) + (
            [f"{self.absolute:g}"] if self.absolute is not None else []
        )
        return "+".join(parts)
