"""The report's data-path section: inference through the real data path beside the model alone.

One row per speed configuration that trained (seeds and strategies share one row: the median over their
cells): the tensor-only img/s of `speed` (a random tensor already in memory, as timm's and optimum-benchmark's
figures are), the model alone on the decoded test images, end-to-end (the images decoded, resized,
normalised and batched, then the model; bench.measure.train.datapath), their ratio and the data path's share
of a batch's time. A ratio well below 1 is an input bottleneck the tensor-only figure hides.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.core.result import CellResult
from bench.measure.catalogue import (
    DATA_PATH_SHARE,
    END_TO_END_RATIO,
    END_TO_END_THROUGHPUT,
    MODEL_ONLY_THROUGHPUT,
    THROUGHPUT,
)
from bench.report.data import RunData

INPUT_BOUND = 0.8  # end-to-end below this share of the model alone: the data path sets the pace
_CONFIG = ("model", "resolution", "batch_size", "precision", "channels_last")


def _median(results: list[CellResult], metric) -> float | None:
    values = [v for r in results if (v := metric.number(r)) is not None]
    return statistics.median(values) if values else None


def data_path_data(run: RunData) -> dict[str, Any] | None:
    """Rows for the section, or None when no cell timed its data path."""
    groups: dict[tuple, list[CellResult]] = {}
    for r in run.ok:
        if END_TO_END_THROUGHPUT.number(r) is not None:
            groups.setdefault(tuple(getattr(r.cell, f) for f in _CONFIG), []).append(r)
    if not groups:
        return None
    rows = []
    sources: set[str] = set()
    workers: set[int] = set()
    for members in groups.values():
        first = members[0].cell
        for r in members:
            detail = (r.measurements.get(END_TO_END_THROUGHPUT.measurement) or {}).get("data_path") or {}
            if detail.get("images_from"):
                sources.add(detail["images_from"])
            if detail.get("loader_workers") is not None:
                workers.add(int(detail["loader_workers"]))
        rows.append(
            {
                "model": first.model,
                "config": f"{first.resolution}px bs={first.batch_size} {first.precision}"
                + (" +channels_last" if first.channels_last else ""),
                "tensor_only": _median(members, THROUGHPUT),
                "model_only": _median(members, MODEL_ONLY_THROUGHPUT),
                "end_to_end": _median(members, END_TO_END_THROUGHPUT),
                "ratio": _median(members, END_TO_END_RATIO),
                "share": _median(members, DATA_PATH_SHARE),
                "cells": len(members),
            }
        )
    rows.sort(key=lambda row: float(row["ratio"] or 0))
    return {
        "rows": rows,
        "sources": sorted(sources),
        "workers": sorted(workers),
        "bottlenecks": [row["model"] for row in rows if isinstance(row["ratio"], float) and row["ratio"] < INPUT_BOUND],
    }
