"""Run integrity: training re-seeds from the cell's seed, the data is checked before any cell runs, and
`num_classes` defaults to the data's class count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.execution.cell import run_cell
from tests.cell_factory import make_cell

SETTINGS = {
    "profile": {},
    "speed": {"warmup_iters": 1, "min_repeats": 2, "min_time_s": 0.0},
    # hflip and crop_pad draw augmentation, small_cnn's dropouts draw masks: every draw training makes
    "train": {
        "data": {"kind": "digits", "options": {}, "hflip": True, "crop_pad": 1, "subset": 0.25},
        "epochs": 1,
        "lr": 0.002,
    },
}


def test_training_learns_the_same_whatever_the_cell_measured_before(tmp_path):
    """The same training settings measured as [profile, speed, train] and as [train] alone give identical
    test predictions (probabilities to 6 digits included): `profile` and `speed` draw random inputs from the
    global state, and training re-seeds from the cell's seed when it starts."""
    predictions = {}
    for measure in (("profile", "speed", "train"), ("train",)):
        cell = make_cell(
            model="small_cnn",
            family="small_cnn",
            resolution=16,
            batch_size=32,
            measure=measure,
            settings={k: v for k, v in SETTINGS.items() if k in measure},
        )
        out = tmp_path / "-".join(measure)
        result = run_cell(cell, torch.device("cpu"), artifact_dir=out)
        assert result.status == "ok", result.reason
        predictions[measure] = (out / "predictions.csv").read_text()
    assert predictions[("profile", "speed", "train")] == predictions[("train",)]
    assert len(predictions[("train",)].splitlines()) > 50  # a real test set, not an empty file


def _ten_class_csv(folder, header="id,img_path,artist", per_class=7):
    from PIL import Image

    rows = [header]
    (folder / "img").mkdir(exist_ok=True)
    for k in range(10):
        for i in range(per_class):
            rel = f"img/painter{k}_{i}.png"
            Image.new("RGB", (12, 12), (25 * k, 20 * i, 255 - 25 * k)).save(folder / rel)
            rows.append(f"p{k}_{i},{rel}" + ("" if header.count(",") == 1 else f",painter_{k}"))
    path = folder / "artists10.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow  # 20-80 s on the shared 2-core machine: resnet18's profile, speed and 4 epochs
def test_the_artists_suite_on_a_10_class_csv_trains_10_class_heads(tmp_path, monkeypatch):
    """suites/artists.yaml with only its CSV set (README's advice): every cell gets 10 classes from the data,
    and a cell of the quick profile (resnet18, as planned) trains and predicts 10 classes."""
    from bench.execution.sweep import run_cells
    from bench.store.run_store import RunStore
    from bench.suite import expand, load_suite

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    csv = _ten_class_csv(tmp_path)
    overrides = [f"settings.train.data.options.csv={csv}"]
    cells = expand(load_suite(root / "suites" / "artists.yaml", "quick", overrides))
    assert len(cells) == 12 and {c.num_classes for c in cells} == {10}
    cell = next(c for c in cells if c.model == "resnet18" and c.strategy == "none" and c.precision == "fp32")
    store = RunStore.create(tmp_path / "run")
    summary = run_cells([cell], store, torch.device("cpu"), isolation="none")
    result = summary.results[0]
    assert result.status == "ok", result.reason
    assert len(result.measurements["train"]["label_map"]) == 10
    header = (store.artifact_dir(cell.id) / "predictions.csv").read_text().splitlines()[0]
    assert [c for c in header.split(",") if c.startswith("p_")] == [f"p_painter_{k}" for k in range(10)]


def test_a_csv_without_its_label_column_stops_before_any_cell(tmp_path):
    """The artists suite on a CSV that lacks the label column: exit 2 with one message naming the file and
    the column, before any cell (no run directory is even created)."""
    from typer.testing import CliRunner

    from bench.cli import app

    root = Path(__file__).resolve().parents[1]
    csv = _ten_class_csv(tmp_path, header="id,img_path")
    out = tmp_path / "run"
    set_csv = f"settings.train.data.options.csv={csv}"
    result = CliRunner().invoke(
        app, ["run", str(root / "suites" / "artists.yaml"), "--set", set_csv, "--out", str(out)]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "artists10.csv:1: CSV has no column 'artist' (columns: id, img_path)" in lines[0]
    assert not out.exists()


def test_a_fixed_num_classes_is_checked_against_the_data_before_any_cell(tmp_path, suite_file):
    """A suite that fixes num_classes at 50 on 10-class data stops before anything runs (exit 2, one line)."""
    from typer.testing import CliRunner

    from bench.cli import app

    _ten_class_csv(tmp_path)
    suite = suite_file(
        "name: fixed\nmodels: [small_cnn]\nnum_classes: 50\nmatrix: {resolution: [12], batch_size: [4]}\n"
        "measure: [profile, train]\nsettings: {train: {data: {kind: csv, options: {csv: artists10.csv}}}}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert text.count("error:") == 1 and "num_classes: the data has 10 classes" in text
    assert "but the suite's num_classes is 50" in text and "set num_classes: 10" in text
    assert not (out / "cells").exists() or not list((out / "cells").iterdir())
