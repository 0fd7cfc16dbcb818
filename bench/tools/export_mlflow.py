"""`bench export mlflow` and a suite's `mlflow:` setting: one MLflow run per cell.

Each cell becomes one MLflow run in an experiment (default: the suite's name): the cell's resolved config
as params (dotted keys: `settings.train.lr`), every numeric value its measurements recorded as a metric
(`speed.throughput_img_s`, `train.macro_f1`), each per-epoch curve value as a step metric (`curve.val_loss`,
step = epoch), tags for the cell id, label, suite, run id, status and whether the data was a synthetic
stand-in, and the cell's JSON, its saved predictions and the run's report (when rendered) as artifacts.

A cell's MLflow run is found again by its tags (`bench.cell_id`, `bench.run_id`), so exporting twice, or
exporting a run that already logged while running, adds nothing: a run already there is kept, and only an
artifact it lacks (the report, rendered after the sweep) is added. A cell run again since (a resumed run
redoing a failed cell) replaces its earlier MLflow run. The tracking URI defaults to MLflow's own default
for the installed version (`MLFLOW_TRACKING_URI`, else a local store), so no server is needed.
Needs the `mlflow` extra (`pip install 'bench[mlflow]'`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.core.errors import InputError
from bench.core.result import CellResult

TAG_CELL, TAG_RUN, TAG_SUITE, TAG_STARTED = "bench.cell_id", "bench.run_id", "bench.suite", "bench.started_at"
TAG_LABEL, TAG_STATUS, TAG_SYNTHETIC = "bench.label", "bench.status", "bench.synthetic_data"
CURVE_PREFIX = "curve."
REPORT_DIR = "report"
REPORT_FILES = ("report.md", "report.html")
_BATCH = 100  # log_batch's documented limits: 1000 metrics, 100 params, 100 tags per call
_MAX_PARAM = 6000  # MLflow 3's longest param value
_CURVES, _EPOCH = "curves", "epoch"


def _mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow import MlflowClient
    except ImportError:
        raise InputError(
            "MLflow is not installed", field="mlflow", hint="pip install 'bench[mlflow]' (or mlflow-skinny)"
        ) from None
    return MlflowClient


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[prefix] = text[:_MAX_PARAM]


def params_of(result: CellResult) -> dict[str, str]:
    """The cell's resolved config as flat dotted params, values as MLflow stores them (text)."""
    out: dict[str, str] = {}
    _flat("", result.cell.to_dict(), out)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_of(result: CellResult) -> dict[str, float]:
    """Every numeric scalar each measurement recorded, as `measurement.key`."""
    out = {}
    for name, data in result.measurements.items():
        for key, value in (data or {}).items():
            if _number(value):
                out[f"{name}.{key}"] = float(value)
    return out


def curve_steps(result: CellResult) -> list[tuple[str, int, float]]:
    """(`curve.<metric>`, epoch, value) for every per-epoch value of a training cell."""
    out = []
    for entry in (result.measurements.get("train") or {}).get(_CURVES) or []:
        epoch = entry.get(_EPOCH)
        for key, value in entry.items():
            if key != _EPOCH and _number(value) and isinstance(epoch, int):
                out.append((CURVE_PREFIX + key, epoch, float(value)))
    return out


def _synthetic(result: CellResult) -> str:
    train = result.measurements.get("train") or {}
    return str(bool(train.get("synthetic_data"))).lower() if "synthetic_data" in train else "n/a"


def _millis(started_at: str | None) -> int:
    if started_at:
        try:
            return int(datetime.fromisoformat(started_at).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)


class MlflowExporter:
    """Logs cells of one bench run to one MLflow experiment."""

    def __init__(self, run_dir: Path, suite: str, *, tracking_uri: str | None = None, experiment: str | None = None):
        client_cls = _mlflow()
        self.run_dir = Path(run_dir)
        self.suite = suite
        self.run_id = self.run_dir.name
        self.client = client_cls(tracking_uri=tracking_uri) if tracking_uri else client_cls()
        name = experiment or suite
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)

    def existing(self, cell_id: str) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_CELL}` = '{cell_id}' and tags.`{TAG_RUN}` = '{self.run_id}'",
        )

    def log(self, result: CellResult) -> str:
        """The MLflow run id of the cell, logged now unless the same result is already there."""
        started = result.started_at or ""
        kept = None
        for found in self.existing(result.id):
            if kept is None and found.data.tags.get(TAG_STARTED, "") == started:
                kept = found.info.run_id
            else:  # a result of this cell that has been replaced (the cell ran again), or a duplicate
                self.client.delete_run(found.info.run_id)
        if kept is None:
            kept = self._create(result)
        self._log_report(kept)
        return kept

    def _create(self, result: CellResult) -> str:
        from mlflow.entities import Metric, Param, RunTag

        start = _millis(result.started_at)
        tags = {
            TAG_CELL: result.id,
            TAG_RUN: self.run_id,
            TAG_SUITE: self.suite,
            TAG_STARTED: result.started_at or "",
            TAG_LABEL: result.cell.label(),
            TAG_STATUS: result.status,
            TAG_SYNTHETIC: _synthetic(result),
        }
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags, run_name=result.cell.label())
        rid = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in metrics_of(result).items()]
        metrics += [Metric(k, v, now, step) for k, step, v in curve_steps(result)]
        params = [Param(k, v) for k, v in params_of(result).items()]
        for i in range(0, max(len(metrics), len(params)), _BATCH):
            self.client.log_batch(rid, metrics=metrics[i : i + _BATCH], params=params[i : i + _BATCH])
        if result.reason:
            self.client.log_batch(rid, tags=[RunTag("bench.reason", result.reason[:_MAX_PARAM])])
        with tempfile.TemporaryDirectory() as tmp:
            cell_json = Path(tmp) / "cell.json"
            cell_json.write_text(json.dumps(result.to_dict(), indent=2, default=str), encoding="utf-8")
            self.client.log_artifact(rid, str(cell_json))
        cell_dir = self.run_dir / "cells" / result.id
        train = result.measurements.get("train") or {}
        for key in ("predictions_file", "val_predictions_file"):
            name = train.get(key)
            if name and (cell_dir / name).is_file():
                self.client.log_artifact(rid, str(cell_dir / name), artifact_path="predictions")
        end = start + int((result.duration_s or 0) * 1000)
        self.client.set_terminated(rid, "FINISHED" if result.status != "failed" else "FAILED", end_time=end)
        return rid

    def _log_report(self, rid: str) -> None:
        present = [self.run_dir / n for n in REPORT_FILES if (self.run_dir / n).is_file()]
        if not present:
            return
        logged = {Path(a.path).name for a in self.client.list_artifacts(rid, REPORT_DIR)}
        for path in present:
            if path.name not in logged:
                self.client.log_artifact(rid, str(path), artifact_path=REPORT_DIR)
        files = self.run_dir / "report_files"
        if files.is_dir() and "report_files" not in logged:
            self.client.log_artifacts(rid, str(files), artifact_path=f"{REPORT_DIR}/report_files")


def export(
    run_dir: Path,
    results: Iterable[CellResult],
    suite: str,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> dict[str, str]:
    """Every cell of a run to MLflow; returns cell id -> MLflow run id."""
    exporter = MlflowExporter(run_dir, suite, tracking_uri=tracking_uri, experiment=experiment)
    return {r.id: exporter.log(r) for r in results}
