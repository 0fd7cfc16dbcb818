"""Cells that differ only by seed, aggregated: mean, std and a 95% confidence interval per metric.

Plain data in, plain data out. The interval is Student's t (n - 1 degrees of freedom) around the mean:
mean ± t_{0.975, n-1} · std / sqrt(n); with one seed there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from scipy import stats as _stats

from bench.core.cell import cell_id
from bench.measure.catalogue import AGGREGATED

# the metrics aggregated over seeds are the catalogue's (bench.measure.catalogue.AGGREGATED)
DEFAULT_METRICS = tuple(m.path for m in AGGREGATED)


def mean_std_ci(values: list[float], confidence: float = 0.95) -> dict[str, float | int | None]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def group_over(results: Iterable, *fields: str, statuses: tuple[str, ...] = ("ok",)) -> dict[str, list]:
    """Cells of the given statuses grouped by their identity without `fields` (e.g. "seed"): key -> cells,
    in order."""
    groups: dict[str, list] = {}
    for r in results:
        if r.status not in statuses:
            continue
        identity = r.cell.identity()
        for name in fields:
            identity.pop(name, None)
        groups.setdefault(cell_id(identity), []).append(r)
    return groups


def metric_values(members: Iterable, metric: str) -> list[float]:
    """The numeric values of `measurement.key` over cells (absent or non-numeric values left out)."""
    measurement, _, name = metric.partition(".")
    values = [m.measurements.get(measurement, {}).get(name) for m in members]
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def aggregate_seeds(results: Iterable, metrics: Iterable[str] = DEFAULT_METRICS) -> list[dict[str, Any]]:
    """One row per group of finished cells that differ only in `seed`: config + metric statistics."""
    rows = []
    for key, members in group_over(results, "seed").items():
        first = members[0].cell
        row: dict[str, Any] = {
            "group": key,
            "model": first.model,
            "resolution": first.resolution,
            "batch_size": first.batch_size,
            "precision": first.precision,
            "strategy": first.strategy,
            "seeds": ";".join(str(m.cell.seed) for m in members),
            **{f"axis.{k}": v for k, v in first.axes.items()},  # dotted-path axes the suite swept
        }
        for metric in metrics:
            values = metric_values(members, metric)
            if not values:
                continue
            for stat, value in mean_std_ci(values).items():
                row[f"{metric}.{stat}"] = value
        rows.append(row)
    return rows
