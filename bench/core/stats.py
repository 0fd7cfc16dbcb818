"""Statistics of timing samples: raw samples kept, statistics derived (as in pytest-benchmark).

Plain data in, plain data out; no I/O, no clocks.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def percentile(sorted_data: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted data (numpy's default 'linear' method)."""
    if not sorted_data:
        raise ValueError("percentile of no data")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    pos = (len(sorted_data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_data) - 1)
    return sorted_data[lo] + (sorted_data[hi] - sorted_data[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of a list of samples (seconds, or any unit)."""

    data: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        return cls(tuple(float(s) for s in samples))

    @property
    def sorted(self) -> list[float]:
        return sorted(self.data)

    @property
    def n(self) -> int:
        return len(self.data)

    @property
    def total(self) -> float:
        return math.fsum(self.data)

    @property
    def min(self) -> float:
        return min(self.data)

    @property
    def max(self) -> float:
        return max(self.data)

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def median(self) -> float:
        return statistics.median(self.data)

    @property
    def stddev(self) -> float:
        """Sample standard deviation (n-1); 0 for a single sample."""
        return statistics.stdev(self.data) if self.n > 1 else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.sorted, q)

    @property
    def iqr(self) -> float:
        return self.pct(75) - self.pct(25)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "std": self.stddev,
            "p90": self.pct(90),
            "p99": self.pct(99),
            "iqr": self.iqr,
        }
