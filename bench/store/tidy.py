"""Tidy tables of a run: the rows of results.csv as data, the per-epoch curves and the per-class metrics in long
format (one row per cell, epoch or class, and metric), and their Parquet copies.

`results.csv` keeps one flat row per cell (`CellResult.flat_row`); `curves.csv` and `per_class.csv` are
written beside it, each row `id, label, epoch|class, metric, value`, so that a plot of any sweep is one
pandas line. With pyarrow installed (the `parquet` extra) the three are also written as `results.parquet`,
`curves.parquet` and `per_class.parquet`, where list columns stay lists. The Python API (bench.api) builds
its DataFrames with the same functions.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.core.files import atomic_write
from bench.core.result import CellResult

CURVES_FILE = "curves.csv"
PER_CLASS_FILE = "per_class.csv"
CURVE_COLUMNS = ("id", "label", "epoch", "metric", "value")
PER_CLASS_COLUMNS = ("id", "label", "class", "metric", "value")
_CURVES = "curves"  # train's per-epoch list of {epoch, <metric>: value, ...}
_PER_CLASS = "per_class"  # train's {class: [...], <metric>: [...]}
_EPOCH, _CLASS = "epoch", "class"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def result_row(result: CellResult) -> dict[str, Any]:
    """results.csv's row of a cell, with the list columns as lists (the CSV joins them by ';')."""
    row = result.flat_row()
    for name in result.cell.measure:
        for key, value in (result.measurements.get(name) or {}).items():
            column = f"{name}.{key}"
            if column in row and isinstance(value, list):
                row[column] = list(value)
    return row


def result_rows(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    return [result_row(r) for r in results]


def curve_rows(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    """One row per cell, epoch and numeric curve value (train loss, validation metrics, lr, epoch time...)."""
    rows = []
    for r in results:
        label = r.cell.label()
        for entry in (r.measurements.get("train") or {}).get(_CURVES) or []:
            epoch = entry.get(_EPOCH)
            for metric, value in entry.items():
                if metric != _EPOCH and _is_number(value):
                    rows.append({"id": r.id, "label": label, "epoch": epoch, "metric": metric, "value": value})
    return rows


def per_class_rows(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    """One row per cell, class and numeric per-class value (precision, recall, F1, support)."""
    rows = []
    for r in results:
        label = r.cell.label()
        table = (r.measurements.get("train") or {}).get(_PER_CLASS) or {}
        classes = table.get(_CLASS) or []
        for metric, values in table.items():
            if metric == _CLASS or not isinstance(values, list):
                continue
            for cls, value in zip(classes, values):
                if _is_number(value):
                    rows.append({"id": r.id, "label": label, "class": cls, "metric": metric, "value": value})
    return rows


def frame(rows: list[dict[str, Any]], columns: Iterable[str] = ()):
    """A DataFrame of dict rows, the columns in first-seen order; empty strings and None are missing values
    (as pandas reads them from the CSV), numbers are numbers, list columns hold lists."""
    import pandas as pd

    names: list[str] = list(columns)
    for row in rows:
        names.extend(k for k in row if k not in names)
    missing = float("nan")
    data = {
        name: [missing if (v := row.get(name)) is None or (isinstance(v, str) and v == "") else v for row in rows]
        for name in names
    }
    return pd.DataFrame(data, columns=names).infer_objects()


def write_parquet(run_dir: Path, results: list[CellResult]) -> None:
    """With pyarrow (the `parquet` extra), Parquet copies of results.csv, curves.csv and per_class.csv."""
    if importlib.util.find_spec("pyarrow") is None:
        return
    for name, rows, columns in (
        ("results.parquet", result_rows(results), ()),
        ("curves.parquet", curve_rows(results), CURVE_COLUMNS),
        ("per_class.parquet", per_class_rows(results), PER_CLASS_COLUMNS),
    ):
        _write_parquet(run_dir / name, _parquet_ready(frame(rows, columns)))


def _write_parquet(path: Path, df: Any) -> None:
    atomic_write(path, lambda fh: df.to_parquet(fh, index=False), binary=True)


def _parquet_ready(df):
    """Columns Arrow cannot type as they are (numbers beside strings, e.g. a swept axis of mixed values) as text;
    a list column's missing values as empty lists."""
    import pyarrow as pa

    for name in df.columns:
        if df[name].dtype != object:
            continue
        values = list(df[name])
        if any(isinstance(v, list) for v in values):
            df[name] = [v if isinstance(v, list) else [] for v in values]
            continue
        try:
            pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            df[name] = [None if isinstance(v, float) and math.isnan(v) else str(v) for v in values]
    return df
