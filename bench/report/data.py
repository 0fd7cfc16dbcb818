"""What a report reads: one or more run directories from the results store, as plain data.

A report never runs anything: it reads `env.json`, `suite.resolved.json`, `suite.yaml` and the cell
files, and (for the noise of a macro-F1 difference) the predictions saved beside the cells. Anything
missing is simply absent, so a partial or interrupted run still reports what it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import InputError
from bench.core.files import read_json_object
from bench.core.result import CellResult
from bench.store.run_store import RunStore


@dataclass
class Predictions:
    """A cell's saved validation predictions: image keys, true and predicted class indices."""

    keys: tuple[str, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    n_classes: int


@dataclass
class RunData:
    run_dir: Path
    results: list[CellResult]
    env: dict[str, Any] = field(default_factory=dict)
    suite: dict[str, Any] = field(default_factory=dict)
    suite_yaml: str | None = None
    _predictions: dict[str, Predictions | None] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return str(self.suite.get("name") or self.run_dir.parent.name)

    @property
    def label(self) -> str:
        """A short name for the run: `<suite>/<run-id>`."""
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"

    @property
    def ok(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "ok"]

    def predictions(self, result: CellResult) -> Predictions | None:
        """The cell's predictions.csv, read once; None when the cell saved none."""
        if result.id not in self._predictions:
            self._predictions[result.id] = _read_predictions(self.run_dir, result)
        return self._predictions[result.id]


def _read_predictions(run_dir: Path, result: CellResult) -> Predictions | None:
    train = result.measurements.get("train", {})
    name = train.get("predictions_file")
    if not name:
        return None
    path = RunStore(run_dir).artifact_dir(result.id) / name
    if not path.is_file():
        return None
    import pandas as pd

    df = pd.read_csv(path, usecols=["key", "true_index", "pred_index"], dtype={"key": str})
    n_classes = len(train.get("label_map") or []) or int(max(df["true_index"].max(), df["pred_index"].max()) + 1)
    return Predictions(
        tuple(df["key"]), df["true_index"].to_numpy(np.int64), df["pred_index"].to_numpy(np.int64), n_classes
    )


def load_run(run_dir: str | Path) -> RunData:
    """Read one run directory; an empty or foreign folder is an input error naming it."""
    run_dir = Path(run_dir)
    results = RunStore(run_dir).read_cells()
    if not results:
        raise InputError(
            "no cell results in this run directory", file=run_dir, hint="pass a folder written by `bench run`"
        )
    yaml_path = run_dir / "suite.yaml"
    return RunData(
        run_dir=run_dir,
        results=results,
        env=read_json_object(run_dir / "env.json"),
        suite=read_json_object(run_dir / "suite.resolved.json"),
        suite_yaml=yaml_path.read_text(encoding="utf-8") if yaml_path.is_file() else None,
    )


def load_runs(run_dirs: list[str | Path]) -> list[RunData]:
    if not run_dirs:
        raise InputError("no run directory given", hint="bench report RUN_DIR [RUN_DIR ...]")
    return [load_run(d) for d in run_dirs]
