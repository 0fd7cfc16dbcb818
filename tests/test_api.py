"""The Python API (bench.api): a run as pandas DataFrames equal to its results.csv, load, compare, the tidy
files, `python -m bench`, and the README's notebook example run as written."""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench.api import CellProgress, Comparison, Run
from bench.core.errors import InputError
from bench.store.run_store import RunStore

ROOT = Path(__file__).resolve().parents[1]
NIGHTLY = ROOT / "results" / "baselines" / "nightly"
# the smoke suite, two of its models and short timings, so that the run takes seconds (a cell in this process)
QUICK_SMOKE = [
    "models=[mobilenet_v2, resnet18]",
    "settings.speed.min_repeats=3",
    "settings.speed.min_time_s=0",
    "settings.speed.warmup_iters=1",
    "settings.speed.warmup_max_iters=2",
    "settings.speed.warmup_max_time_s=0.5",
]


def _same(frame_value, csv_value) -> bool:
    """A frame's value against the CSV's as pandas reads it: lists joined by ';', missing as NaN."""
    if isinstance(frame_value, list):
        return (";".join(frame_value) == csv_value) if frame_value else pd.isna(csv_value)
    if pd.isna(frame_value) or pd.isna(csv_value):
        return bool(pd.isna(frame_value) and pd.isna(csv_value))
    if isinstance(frame_value, (int, float)) and not isinstance(frame_value, bool):
        return math.isclose(float(frame_value), float(csv_value), rel_tol=0, abs_tol=0)
    return frame_value == csv_value


def _assert_frame_is_csv(df: pd.DataFrame, run_dir: Path) -> None:
    csv = pd.read_csv(run_dir / "results.csv")
    assert list(df.columns) == list(csv.columns)
    assert list(df["id"]) == list(csv["id"])
    for column in df.columns:
        for i, (a, b) in enumerate(zip(df[column], csv[column])):
            assert _same(a, b), f"{column} row {i}: frame {a!r}, results.csv {b!r}"
        lists = any(isinstance(v, list) for v in df[column])
        if pd.api.types.is_numeric_dtype(csv[column]) and not pd.api.types.is_bool_dtype(csv[column]) and not lists:
            assert pd.api.types.is_numeric_dtype(df[column]), f"{column} is numeric in the CSV, {df[column].dtype} here"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Run:
    events: list[CellProgress] = []
    out = tmp_path_factory.mktemp("api") / "smoke"
    run = bench.run("smoke", set=QUICK_SMOKE, out=out, isolation="none", report=False, progress=events.append)
    run.events = events  # type: ignore[attr-defined]
    return run


@pytest.mark.slow  # four cells run in this process (docs/measurements-log.md has its time)
def test_run_smoke_to_pandas_equals_results_csv(smoke_run):
    run = smoke_run
    assert isinstance(run, bench.Run) and run.failed == 0
    df = run.to_pandas()
    assert len(df) == len(run.results) == 4
    _assert_frame_is_csv(df, run.run_dir)
    # numbers as numbers, lists as lists
    assert pd.api.types.is_integer_dtype(df["profile.params"]) and df["profile.params"].gt(1e6).all()
    assert pd.api.types.is_float_dtype(df["speed.throughput_img_s"]) and df["speed.throughput_img_s"].gt(0).all()
    assert all(isinstance(v, list) for v in df["profile.uncounted_ops"])
    # bench.load of the same directory gives the same frame
    pd.testing.assert_frame_equal(bench.load(run.run_dir).to_pandas(), df)
    # the progress callback saw every cell start and finish, in order
    finished = [e for e in run.events if e.event == "finished"]
    assert [e.cell_id for e in finished] == list(df["id"]) and [e.done for e in finished] == [1, 2, 3, 4]
    assert all(e.status == "ok" and e.total == 4 for e in finished)


def test_load_a_run_with_training_cells(tmp_path):
    run_dir = tmp_path / "nightly"
    shutil.copytree(NIGHTLY, run_dir)
    run = bench.load(run_dir)
    RunStore(run_dir).write_csv(run.results)  # the committed baseline predates the tidy files: write them
    _assert_frame_is_csv(run.to_pandas(), run_dir)
    label_maps = run.to_pandas()["train.label_map"]
    assert all(v == [f"digit_{i}" for i in range(10)] for v in label_maps)

    curves, per_class = run.curves(), run.per_class()
    assert list(curves.columns) == ["id", "label", "epoch", "metric", "value"]
    assert list(per_class.columns) == ["id", "label", "class", "metric", "value"]
    pd.testing.assert_frame_equal(curves, pd.read_csv(run_dir / "curves.csv"), check_dtype=False)
    pd.testing.assert_frame_equal(per_class, pd.read_csv(run_dir / "per_class.csv"), check_dtype=False)
    for r in run.results:  # every epoch of every cell's curve, values as in the cell file
        train = r.measurements["train"]
        mine = curves[(curves["id"] == r.id) & (curves["metric"] == "val_loss")]
        assert list(mine["epoch"]) == [c["epoch"] for c in train["curves"]]
        assert list(mine["value"]) == [c["val_loss"] for c in train["curves"]]
        f1 = per_class[(per_class["id"] == r.id) & (per_class["metric"] == "f1")]
        assert list(f1["class"]) == train["per_class"]["class"] and list(f1["value"]) == train["per_class"]["f1"]
    pytest.importorskip("pyarrow", reason="the parquet extra is not installed")
    for name, frame in (("results", run.to_pandas()), ("curves", curves), ("per_class", per_class)):
        back = pd.read_parquet(run_dir / f"{name}.parquet")
        assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
    assert list(pd.read_parquet(run_dir / "results.parquet")["train.label_map"].iloc[0]) == label_maps.iloc[0]


def test_prepare_and_execute_are_bench_run(tmp_path):
    """`bench run` is prepare + execute: the lock is held from prepare until execute ends, the run's allocator
    (pinned on a CPU unless the suite says otherwise) is the executor's and env.json's, summary.csv is written."""
    from bench import api

    suite = {
        "name": "api-halves",
        "models": [{"name": "small_cnn", "kwargs": {"filters": 4, "dense": 8}}],
        "matrix": {"resolution": [12], "batch_size": [2], "seed": [0, 1]},
        "measure": ["profile"],
    }
    out = tmp_path / "run"
    prepared = api.prepare(suite, out=out, isolation="none")
    assert prepared.executor.allocator == "pinned" and len(prepared.cells) == 2
    with pytest.raises(InputError, match="another bench run"):
        RunStore(out).acquire()  # held from prepare on
    run = api.execute(prepared, report=False)
    assert run.failed == 0 and run.report_paths == {}
    RunStore(out).acquire()  # released when execute ended
    assert run.env["allocator"]["setting"] == "pinned"
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["seeds"]) == ["0;1"] and list(summary["runs"]) == [2]

    other = api.prepare({**suite, "allocator": "default"}, out=tmp_path / "default", isolation="none")
    try:
        assert other.executor.allocator == "default"
    finally:
        other.release()


def test_a_saved_baseline_keeps_the_tidy_files(tmp_path):
    """`bench baseline save` copies curves.csv and per_class.csv (and the Parquet copies, where written) with
    results.csv, so a baseline loads as the same tidy tables as its run."""
    from bench.store.baselines import save_baseline

    run_dir = tmp_path / "run"
    shutil.copytree(NIGHTLY, run_dir)
    shutil.rmtree(run_dir / "repeats")
    RunStore(run_dir).write_csv(bench.load(run_dir).results)  # the committed baseline predates the tidy files
    tidy = ["results.csv", "curves.csv", "per_class.csv"]
    if importlib.util.find_spec("pyarrow") is not None:
        tidy += ["results.parquet", "curves.parquet", "per_class.parquet"]
    saved = save_baseline(run_dir, "tidy", tmp_path / "baselines")
    for name in tidy:
        assert (saved / name).is_file(), f"{name} not in the saved baseline"
        assert (saved / name).read_bytes() == (run_dir / name).read_bytes(), name
    assert len(pd.read_csv(saved / "curves.csv")) > 0 and len(pd.read_csv(saved / "per_class.csv")) > 0
    pd.testing.assert_frame_equal(bench.load(saved).curves(), bench.load(run_dir).curves())


def test_compare_a_run_with_itself_passes_and_a_worse_one_regresses(tmp_path):
    import json

    base = tmp_path / "base" / "run"
    shutil.copytree(NIGHTLY, base)
    shutil.rmtree(base / "repeats")
    for cell in (base / "cells").glob("*.json"):  # timings of a shared machine may be inconclusive: judge the rest
        data = json.loads(cell.read_text())
        data["measurements"].pop("speed")
        cell.write_text(json.dumps(data))
    same = bench.compare(base, bench.load(base))
    assert isinstance(same, Comparison) and same.verdict == "pass", same.to_dict()
    table = same.to_pandas()
    assert len(table) > 0 and not table["regression"].any()
    worse = tmp_path / "cur" / "run"
    shutil.copytree(base, worse)
    cell = next((worse / "cells").glob("*.json"))
    data = json.loads(cell.read_text())
    data["measurements"]["profile"]["macs"] += 1  # MACs are judged exactly
    cell.write_text(json.dumps(data))
    comp = bench.compare(base, worse)
    assert comp.verdict == "regression"
    assert [f.metric for f in comp.regressions] == ["profile.macs"]
    assert "REGRESSION" in comp.markdown()


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(InputError, match="no cell results"):
        bench.load(tmp_path)
    with pytest.raises(InputError, match="no suite 'smok'"):
        bench.run("smok")


def test_python_dash_m_bench_help():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "export" in out.stdout and "run" in out.stdout


def test_readme_notebook_example_runs_as_written(monkeypatch):
    """The README's notebook example, executed as it stands there, from the repository root."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- notebook example -->\s*```python\n(.*?)```", readme, re.S)
    assert found, "README has no notebook example"
    code = found.group(1)
    assert len([line for line in code.splitlines() if line.strip() and not line.startswith("import")]) == 3
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the example, run as written
    import matplotlib.pyplot as plt

    axes = plt.gcf().get_axes()
    assert axes and axes[0].has_data(), "the example drew nothing"
    plt.close("all")
