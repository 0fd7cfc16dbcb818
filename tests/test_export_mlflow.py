"""`bench export mlflow`: a run with training cells in a real local MLflow store (SQLite, MLflow's default kind),
read back with mlflow.search_runs: every cell once, also after a second export; params and final metrics as in
the cell files; the curves' steps are the epochs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install -e '.[mlflow]')")

from bench.cli.app import app  # noqa: E402

NIGHTLY = Path(__file__).resolve().parents[1] / "results" / "baselines" / "nightly"


def _flat(prefix: str, value, out: dict) -> dict:
    """The cell file's config as dotted keys, written independently of the exporter."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value
    return out


def test_export_to_a_local_store_twice(tmp_path, monkeypatch):
    run_dir = tmp_path / "nightly"
    shutil.copytree(NIGHTLY, run_dir)
    (run_dir / "report.md").write_text("# a report\n")
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) lands here
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner = CliRunner()
    for _ in range(2):
        out = runner.invoke(app, ["export", "mlflow", str(run_dir), "--tracking-uri", uri, "--experiment", "nightly-t"])
        assert out.exit_code == 0, out.output
    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=["nightly-t"])
    cells = {p.stem: json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")}
    assert len(cells) == 4
    assert sorted(df["tags.bench.cell_id"]) == sorted(cells)  # every cell once, after two exports
    client = mlflow.MlflowClient(uri)
    for _, row in df.iterrows():
        cell = cells[row["tags.bench.cell_id"]]
        assert row["tags.bench.run_id"] == "nightly" and row["tags.bench.suite"] == "nightly"
        assert row["tags.bench.synthetic_data"] == "false" and row["status"] == "FINISHED"
        params = _flat("", cell["config"], {})
        for key, value in params.items():
            expected = value if isinstance(value, str) else json.dumps(value)
            assert row[f"params.{key}"] == expected, key
        train = cell["measurements"]["train"]
        for name, data in cell["measurements"].items():
            for key, value in data.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert row[f"metrics.{name}.{key}"] == pytest.approx(value, rel=1e-12), f"{name}.{key}"
        assert row["metrics.train.macro_f1"] == train["macro_f1"]
        epochs = [c["epoch"] for c in train["curves"]]
        assert epochs == [1, 2, 3, 4]
        for metric in ("val_loss", "val_macro_f1", "train_loss"):
            history = sorted(client.get_metric_history(row["run_id"], f"curve.{metric}"), key=lambda m: m.step)
            assert [m.step for m in history] == epochs
            assert [m.value for m in history] == pytest.approx([c[metric] for c in train["curves"]])
        artifacts = {a.path for a in client.list_artifacts(row["run_id"])}
        assert {"cell.json", "predictions", "report"} <= artifacts
        assert [a.path for a in client.list_artifacts(row["run_id"], "report")] == ["report/report.md"]
