"""`bench export github-benchmark`: a run's figures as github-action-benchmark's custom JSON.

github-action-benchmark (benchmark-action/github-action-benchmark) charts a repository's benchmark figures
over its commits and alerts when one gets worse by more than a ratio. Its custom tools read a JSON list of
`{"name": str, "unit": str, "value": number, "range": str (optional), "extra": str (optional)}`, one tool
per file: `customBiggerIsBetter` for figures where higher is better, `customSmallerIsBetter` for the
others. This writes both files, one entry per cell and gated metric (the metrics the regression gate
judges, from bench.measure.catalogue, with their units and directions); a metric whose any change is a
change (params, MACs) goes with the smaller-is-better ones, where growth is what an alert should catch.
A timing's range is half the interquartile range of its repeats, in its unit. Names carry the cell id,
which is the same on every machine, so a figure's chart continues from one nightly run to the next.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.core.files import atomic_write_text
from bench.core.metric import HIGHER, Metric
from bench.core.result import CellResult
from bench.core.stats import Stats
from bench.measure.catalogue import (
    LATENCY_SAMPLES,
    LATENCY_VS_REFERENCE,
    REFERENCE_SAMPLES,
    SPEED_BATCH_SIZE,
    THROUGHPUT,
    gated,
)

BIGGER, SMALLER = "customBiggerIsBetter", "customSmallerIsBetter"
FILES = {BIGGER: "github-benchmark-bigger.json", SMALLER: "github-benchmark-smaller.json"}
_MS_PER_S = 1e3


def _repeats(result: CellResult, spec: Metric) -> list[float] | None:
    """A timing metric's repeats in its own unit (throughput from the batch that ran)."""
    samples = LATENCY_SAMPLES.of(result) or []
    if not samples:
        return None
    if spec == LATENCY_VS_REFERENCE:
        refs = REFERENCE_SAMPLES.of(result) or []
        return [a / b for a, b in zip(samples, refs) if b > 0] or None
    if spec == THROUGHPUT:
        batch = SPEED_BATCH_SIZE.of(result) or result.cell.batch_size
        return [batch / s for s in samples if s > 0] or None
    if spec.unit == "ms":
        return [s * _MS_PER_S for s in samples]
    return None


def _range(result: CellResult, spec: Metric) -> str | None:
    if not spec.timing:
        return None
    values = _repeats(result, spec)
    if not values or len(values) < 3:
        return None
    st = Stats.of(values)
    return f"± {(st.pct(75) - st.pct(25)) / 2:.4g}"


def entries(results: list[CellResult], *, suite: str = "", run_id: str = "") -> dict[str, list[dict[str, Any]]]:
    """tool name -> the action's entries for it: one per ok cell and gated metric the cell recorded."""
    out: dict[str, list[dict[str, Any]]] = {BIGGER: [], SMALLER: []}
    for r in results:
        if r.status != "ok":
            continue
        for path, spec in gated().items():
            value = spec.number(r)
            if value is None:
                continue
            entry: dict[str, Any] = {"name": f"{r.cell.label()} ({r.id}) {path}", "unit": spec.unit, "value": value}
            rng = _range(r, spec)
            if rng is not None:
                entry["range"] = rng
            entry["extra"] = "\n".join(
                x for x in (f"cell {r.id}", f"suite {suite}" if suite else "", f"run {run_id}" if run_id else "") if x
            )
            out[BIGGER if spec.direction == HIGHER else SMALLER].append(entry)
    return out


def write(results: list[CellResult], out_dir: Path, *, suite: str = "", run_id: str = "") -> dict[str, Path]:
    """Both files into `out_dir`; returns tool name -> path."""
    paths = {}
    for tool, items in entries(results, suite=suite, run_id=run_id).items():
        path = Path(out_dir) / FILES[tool]
        atomic_write_text(path, json.dumps(items, indent=2) + "\n")
        paths[tool] = path
    return paths
