"""Runner + store: failures recorded and the sweep goes on; results.csv complete; resume; atomic writes."""

import json
import statistics
import textwrap

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.core.files import atomic_write_text
from bench.execution.sweep import run_cells
from bench.measure.timing import TimingResult, time_loop
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite

FAST = "settings: {speed: {warmup_iters: 1, min_repeats: 3, min_time_s: 0.0}}\n"

WITH_FAILURE = (
    textwrap.dedent(
        """
    name: failing
    models:
      - resnet18
      - {name: mobilenet_v2, kwargs: {no_such_argument: 1}}   # fails to build: a TypeError
      - efficientnet_b0
    matrix: {resolution: [32], batch_size: [2]}
    """
    )
    + FAST
)


def test_failed_cell_recorded_and_sweep_goes_on(suite_file, tmp_path):
    suite = load_suite(suite_file(WITH_FAILURE))
    cells = expand(suite)
    store = RunStore.create(tmp_path / "run")
    summary = run_cells(cells, store, torch.device("cpu"))
    statuses = [r.status for r in summary.results]
    assert statuses == ["ok", "failed", "ok"]
    failed = summary.results[1]
    assert failed.reason.startswith("build: TypeError") and "no_such_argument" in failed.reason
    assert "Traceback" in failed.traceback
    df = pd.read_csv(store.run_dir / "results.csv")
    assert list(df["id"]) == [c.id for c in cells]
    assert list(df["status"]) == ["ok", "failed", "ok"]
    assert df.loc[0, "profile.params"] == 11_689_512  # resnet18 with 1000 classes (torchvision docs)
    assert df.loc[2, "speed.throughput_img_s"] > 0
    on_disk = json.loads((store.cells_dir / f"{failed.id}.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["reason"] == failed.reason


def test_cli_run_exit_code_and_every_cell_in_csv(suite_file, tmp_path):
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, ["run", str(suite_file(WITH_FAILURE)), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "failed" in result.output and "no_such_argument" in result.output
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 3 and sorted(df["status"]) == ["failed", "ok", "ok"]
    for name in ("env.json", "suite.resolved.json", "suite.yaml", "plan.json"):
        assert (out / name).is_file()
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["cpu_cores"] >= 1 and "git_commit" in env


def test_show_lists_cells(suite_file, tmp_path):
    out = tmp_path / "r"
    CliRunner().invoke(app, ["run", str(suite_file(WITH_FAILURE)), "--out", str(out)])
    result = CliRunner().invoke(app, ["show", str(out)])
    assert result.exit_code == 0
    assert result.output.count("resnet18") == 1 and "failed" in result.output


def test_rerun_into_same_dir_resumes(suite_file, tmp_path):
    suite = load_suite(suite_file(WITH_FAILURE))
    cells = expand(suite)
    store = RunStore.create(tmp_path / "run")
    run_cells(cells[:1], store, torch.device("cpu"))
    first = (store.cells_dir / f"{cells[0].id}.json").read_text()
    summary = run_cells(cells, store, torch.device("cpu"))
    assert summary.reused == 1
    assert (store.cells_dir / f"{cells[0].id}.json").read_text() == first  # not rerun
    assert [r.status for r in summary.results] == ["ok", "failed", "ok"]


def test_unsupported_precision_is_skipped_not_failed(suite_file, tmp_path, monkeypatch):
    import bench.platform.device as device  # require_precision, which speed calls, asks this

    monkeypatch.setattr(
        device, "precision_unsupported", lambda device, p: "fp16 not on this device" if p == "fp16" else None
    )
    text = "name: p\nmodels: [resnet18]\nmatrix: {resolution: [32], precision: [fp32, fp16]}\n" + FAST
    # in-process: the monkeypatch lives in this process (a speed cell would otherwise run in a fresh one)
    summary = run_cells(
        expand(load_suite(suite_file(text))), RunStore.create(tmp_path / "r"), torch.device("cpu"), isolation="none"
    )
    assert [r.status for r in summary.results] == ["ok", "skipped"]
    skipped = summary.results[1]
    assert skipped.measurements["speed"] == {"status": "skipped", "reason": "fp16 not on this device"}
    assert skipped.measurements["profile"]["status"] == "ok"  # params/FLOPs kept
    assert summary.failed == 0


def test_speed_records_what_it_ran(suite_file, tmp_path):
    text = "name: p\nmodels: [resnet18]\nmatrix: {resolution: [32], batch_size: [3], channels_last: [true]}\n" + FAST
    summary = run_cells(expand(load_suite(suite_file(text))), RunStore.create(tmp_path / "r"), torch.device("cpu"))
    speed = summary.results[0].measurements["speed"]
    assert (speed["batch_size"], speed["resolution"], speed["channels_last"], speed["precision"]) == (
        3,
        32,
        True,
        "fp32",
    )
    # warm-up runs until stable: at least warmup_iters (1) calls, every discarded one counted
    assert (
        speed["repeats"] == len(speed["samples_s"]) >= 3
        and speed["warmup_iters"] == len(speed["warmup_samples_s"]) + 1 >= 1
    )
    assert speed["timing_method"] == "perf_counter"
    assert speed["latency_median_ms"] <= speed["latency_p90_ms"] <= speed["latency_p99_ms"]
    assert speed["throughput_img_s"] == pytest.approx(3 / (speed["latency_median_ms"] / 1e3))
    assert speed["peak_memory_mb"] > 0
    assert len(speed["reference_samples_s"]) == speed["repeats"]
    ratios = sorted(a / b for a, b in zip(speed["samples_s"], speed["reference_samples_s"]))
    assert speed["latency_vs_reference"] == pytest.approx(statistics.median(ratios))
    assert speed["reference_median_ms"] > 0


def test_time_loop_counts_and_excludes_warmup():
    calls = []
    result = time_loop(
        lambda: calls.append(1), device=torch.device("cpu"), warmup_iters=4, min_repeats=7, min_time_s=0.0
    )
    assert len(calls) == 11 and len(result.samples) == 7 and result.warmup_iters == 4
    capped = time_loop(
        lambda: None, device=torch.device("cpu"), warmup_iters=0, min_repeats=5, min_time_s=100.0, max_repeats=12
    )
    assert len(capped.samples) == 12


def test_time_loop_times_the_reference_beside_each_call_and_ratios_are_exact():
    calls = []
    result = time_loop(
        lambda: calls.append("m"),
        device=torch.device("cpu"),
        warmup_iters=2,
        min_repeats=5,
        min_time_s=0.0,
        reference=lambda: calls.append("r"),
    )
    assert calls == ["m", "r"] * 7  # warmed up together, then one reference right after each timed call
    assert len(result.samples) == len(result.reference_samples) == 5
    hand = TimingResult(
        samples=(0.020, 0.030, 0.010), warmup_iters=1, method="perf_counter", reference_samples=(0.010, 0.010, 0.005)
    )
    assert hand.ratios == pytest.approx((2.0, 3.0, 2.0))
    assert TimingResult(samples=(0.02,), warmup_iters=1, method="perf_counter").ratios == ()


def test_latency_vs_reference_cancels_a_machine_slowing_both():
    """A slow machine state slows the model and the reference alike: the ratio stays, the raw time moves."""
    from bench.gate.regression import Threshold, judge
    from bench.measure.catalogue import CATALOGUE as METRICS

    spec = METRICS["speed.latency_vs_reference"]
    assert judge(spec, Threshold.parse("10%"), 5.0, 5.1)[0] is False  # raw latency 40% up, ratio 2%: no regression
    assert judge(spec, Threshold.parse("10%"), 5.0, 6.5)[0] is True  # the model itself 30% slower: a regression


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_text(path, "old")

    with pytest.raises(TypeError):
        atomic_write_text(path, 12345)  # not text: the write fails midway
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind
