"""Cells that differ only by seed, aggregated: mean, std and a 95% confidence interval per metric.

Plain data in, plain data out. The interval is Student's t (n - 1 degrees of freedom) around the mean:
mean ± t_{0.975, n-1} · std / sqrt(n); with one seed there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bench.core import axes as axis_paths
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
    from scipy import stats  # deferred: a second of every run's start, needed only with two seeds or more

    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
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
            identity = axis_paths.without(identity, name)  # a built-in field (seed) or a dotted setting
        groups.setdefault(cell_id(identity), []).append(r)
    return groups


def metric_values(members: Iterable, metric: str) -> list[float]:
    """The numeric values of `measurement.key` over cells (absent or non-numeric values left out)."""
    measurement, _, name = metric.partition(".")
    values = [m.measurements.get(measurement, {}).get(name) for m in members]
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


# what varies between replicate runs of one config: the training seed and the data split's seed
REPLICATES = ("seed", "train.data.split_seed")


def _missing_note(members: list, ok: list) -> str:
    """'3 of 5 runs: 2 failed (train: diverged ...)': why a mean has fewer runs than were asked for."""
    if len(ok) == len(members):
        return ""
    reasons: dict[str, int] = {}
    for m in members:
        if m.status != "ok":
            key = f"{m.status} ({(m.reason or '').split(';')[0][:60]})" if m.reason else m.status
            reasons[key] = reasons.get(key, 0) + 1
    return f"{len(ok)} of {len(members)} runs: " + ", ".join(f"{n} {why}" for why, n in reasons.items())


def aggregate_seeds(results: Iterable, metrics: Iterable[str] = DEFAULT_METRICS) -> list[dict[str, Any]]:
    """One row per group of cells that differ only in their replicates (seed, split seed): config + metric
    statistics over the finished ones, and why any are missing."""
    rows = []
    for key, members in group_over(results, *REPLICATES, statuses=("ok", "failed", "skipped")).items():
        ok = [m for m in members if m.status == "ok"]
        if not ok:
            continue
        first = ok[0].cell
        row: dict[str, Any] = {
            "group": key,
            "model": first.model,
            "resolution": first.resolution,
            "batch_size": first.batch_size,
            "precision": first.precision,
            "strategy": first.strategy,
            "seeds": ";".join(str(m.cell.seed) for m in ok),
            "split_seeds": ";".join(str(axis_paths.value_of(m.cell, REPLICATES[1])) for m in ok),
            "runs": len(ok),
            "runs_note": _missing_note(members, ok),
            **{f"axis.{k}": v for k, v in first.axes.items() if k not in REPLICATES},  # dotted-path axes swept
        }
        for metric in metrics:
            values = metric_values(ok, metric)
            if not values:
                continue
            for stat, value in mean_std_ci(values).items():
                row[f"{metric}.{stat}"] = value
        rows.append(row)
    return rows
