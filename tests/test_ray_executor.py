"""`executor: ray`: cells as Ray tasks on a local two-worker cluster give the same results as the in-process
executor (cell ids, params, FLOPs, accuracy, macro-F1, predictions), a worker killed mid-cell has its cell
retried (Ray's max_retries) and recorded, a cell whose every attempt died fails alone and is rerun on
resume, and the CLI records which executor ran. The suite schema checks (`executor:`, `ray:`) and the
missing-Ray error need no Ray and always run."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import InputError
from bench.execution.executors import RayExecutor, make_executor, ray_available
from bench.execution.sweep import run_cells
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite
from tests.cell_factory import train_wall_clock_keys

ROOT = Path(__file__).resolve().parent.parent
needs_ray = pytest.mark.skipif(
    not ray_available(), reason='Ray is not installed (pip install -e ".[ray]"; CI installs it)'
)

TRAIN_SUITE = textwrap.dedent(
    """
    name: ray-train
    models: [{name: small_cnn, kwargs: {filters: 8, dense: 64}}]
    num_classes: 10
    matrix:
      resolution: [12]
      batch_size: [32]
      seed: [3]
      strategy: [none, weighted_loss]
      train.epochs: [1, 2]
    measure: [profile, train]
    executor: local
    settings:
      train:
        data: {kind: digits, options: {imbalance: 5}, val_fraction: 0.3, subset: 0.5, hflip: false}
        lr: 0.003
        early_stopping: null
        deterministic: true
    """
)

DIE_SUITE = textwrap.dedent(
    """
    name: ray-die
    models: [{{name: small_cnn, kwargs: {{filters: 4, dense: 16}}}}]
    num_classes: 10
    matrix: {{resolution: [12], seed: [0, 1]}}
    measure: [profile, die_once]
    settings:
      die_once: {{marker_dir: "{marker_dir}", kill_seed: 0}}
    """
)

TIMING = train_wall_clock_keys()


# -- no Ray needed ---------------------------------------------------------------------------------------


def test_executor_is_validated_and_not_part_of_cell_ids(suite_file):
    base = TRAIN_SUITE
    local = [c.id for c in expand(load_suite(suite_file(base, "a.yaml")))]
    on_ray = [
        c.id
        for c in expand(
            load_suite(
                suite_file(
                    base.replace("executor: local", "executor: ray\nray: {num_cpus_per_cell: 2, max_retries: 1}"),
                    "b.yaml",
                )
            )
        )
    ]
    assert len(local) == 4 and on_ray == local
    with pytest.raises(InputError) as err:
        load_suite(suite_file(base.replace("executor: local", "executor: rey"), "c.yaml"))
    assert "executor: unknown executor 'rey'" in str(err.value) and "did you mean 'ray'" in str(err.value)
    with pytest.raises(InputError) as err:
        load_suite(suite_file(base.replace("executor: local", "ray: {adress: auto, num_gpus_per_cell: -1}"), "d.yaml"))
    text = str(err.value)
    assert "ray.adress: unknown key 'adress'" in text and "did you mean 'address'" in text
    assert "ray.num_gpus_per_cell: Input should be greater than or equal to 0" in text


def test_ray_executor_without_ray_is_an_input_error(monkeypatch, suite_file, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert not ray_available()
    with pytest.raises(InputError, match=r'pip install "bench\[ray\]"'):
        make_executor("ray")
    path = suite_file("name: x\nmodels: [resnet18]\nmatrix: {resolution: [32]}\nmeasure: [profile]\n")
    result = CliRunner().invoke(
        app, ["run", str(path), "--out", str(tmp_path / "r"), "--executor", "ray", "--no-report"]
    )
    assert result.exit_code == 2 and "needs Ray, which is not installed" in result.output
    result = CliRunner().invoke(
        app, ["run", str(path), "--out", str(tmp_path / "r"), "--executor", "dask", "--no-report"]
    )
    assert result.exit_code == 2 and "unknown executor 'dask'" in result.output


# -- on a local Ray cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """One local cluster with two worker CPUs for this module's tests; shut down at the end. The workers
    inherit PYTHONPATH, so they import this checkout's bench (and this folder's test measurement)."""
    if not ray_available():
        pytest.skip('Ray is not installed (pip install -e ".[ray]"; CI installs it)')
    import ray

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")] + ([old] if old else []))
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"ray.init: {time.perf_counter() - t0:.1f} s")
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _comparable(train: dict) -> dict:
    """A train result without its wall-clock timings and the checkpoint file's name."""
    out = {k: v for k, v in train.items() if k not in TIMING}
    out["curves"] = [{k: v for k, v in row.items() if k not in TIMING} for row in train["curves"]]
    return out


@needs_ray
def test_ray_results_equal_in_process_results(cluster, suite_file, tmp_path):
    cells = expand(load_suite(suite_file(TRAIN_SUITE)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # F1 is bit-identical only at one thread count: the Ray tasks use 1 too
    try:
        local = run_cells(
            cells, RunStore.create(tmp_path / "local"), torch.device("cpu"), base_dir=tmp_path, isolation="none"
        )
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(num_cpus_per_cell=1, torch_threads=1, max_retries=1)
    ray_store = RunStore.create(tmp_path / "ray")
    on_ray = run_cells(cells, ray_store, torch.device("cpu"), base_dir=tmp_path, executor=executor)

    assert [r.id for r in on_ray.results] == [r.id for r in local.results] == [c.id for c in cells]
    for a, b in zip(local.results, on_ray.results):
        assert a.status == b.status == "ok", (b.reason, b.traceback)
        assert (a.executor, b.executor) == ("local", "ray") and b.retries == 0
        assert a.measurements["profile"] == b.measurements["profile"]  # params, MACs, FLOPs, ...
        ta, tb = a.measurements["train"], b.measurements["train"]
        for key in ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "val_loss", "epochs_run"):
            assert ta[key] == tb[key], key
        assert _comparable(ta) == _comparable(tb)
        for name in ("predictions.csv", "best.pt"):  # the worker's files, written into the run directory by the driver
            assert (ray_store.artifact_dir(b.id) / name).read_bytes() == (
                tmp_path / "local" / "cells" / a.id / name
            ).read_bytes()
    # one training run per epoch sweep in each executor: the 1-epoch cells are read off the 2-epoch ones
    assert sum(1 for r in on_ray.results if r.measurements["train"].get("shared_training")) == 2
    stored = [json.loads(p.read_text()) for p in sorted((tmp_path / "ray" / "cells").glob("*.json"))]
    assert len(stored) == 4 and all(d["executor"] == "ray" for d in stored)
    csv = pd.read_csv(tmp_path / "ray" / "results.csv")
    assert sorted(csv["id"]) == sorted(c.id for c in cells) and set(csv["executor"]) == {"ray"}
    print(
        {
            r.id: (
                r.measurements["profile"]["params"],
                r.measurements["train"]["accuracy"],
                r.measurements["train"]["macro_f1"],
            )
            for r in on_ray.results
        }
    )


def _die_suite(suite_file, tmp_path):
    import ray_measure  # noqa: F401  - registers `die_once` (each Ray worker imports it too)

    markers = tmp_path / "markers"
    markers.mkdir()
    cells = expand(load_suite(suite_file(DIE_SUITE.format(marker_dir=markers), "die.yaml")))
    assert [c.seed for c in cells] == [0, 1]
    return cells, markers


@needs_ray
def test_killed_worker_cell_is_retried(cluster, suite_file, tmp_path):
    cells, markers = _die_suite(suite_file, tmp_path)
    store = RunStore.create(tmp_path / "run")
    summary = run_cells(
        cells, store, torch.device("cpu"), base_dir=tmp_path, executor=RayExecutor(max_retries=2, torch_threads=1)
    )
    killed, other = summary.results
    marker = markers / f"{killed.id}.killed"
    assert marker.is_file()  # the first attempt ran, and SIGKILLed its worker mid-cell
    assert killed.status == "ok", (killed.reason, killed.traceback)
    assert killed.retries == 1 and other.retries == 0
    data = killed.measurements["die_once"]
    assert (
        data["killed_pid"] == int(marker.read_text()) and data["pid"] != data["killed_pid"]
    )  # the retry ran in another worker
    assert killed.measurements["profile"]["params"] == other.measurements["profile"]["params"] > 0
    assert other.status == "ok" and not (markers / f"{other.id}.killed").exists()
    stored = store.read_cell(killed.id)
    assert stored.status == "ok" and stored.retries == 1 and stored.executor == "ray"
    row = pd.read_csv(store.run_dir / "results.csv").set_index("id").loc[killed.id]
    assert row["retries"] == 1 and row["status"] == "ok"


@needs_ray
def test_cell_lost_on_every_attempt_fails_alone_and_resume_reruns_it(cluster, suite_file, tmp_path):
    cells, markers = _die_suite(suite_file, tmp_path)
    store = RunStore.create(tmp_path / "run")
    first = run_cells(
        cells, store, torch.device("cpu"), base_dir=tmp_path, executor=RayExecutor(max_retries=0, torch_threads=1)
    )
    killed, other = first.results
    assert killed.status == "failed" and "ray worker lost on every attempt (1)" in killed.reason, killed.reason
    assert other.status == "ok"  # the sweep went on
    assert store.read_cell(killed.id).status == "failed"
    # resumed: the finished cell is kept, the failed one runs again (its marker is there now, so it lives)
    second = run_cells(
        cells, store, torch.device("cpu"), base_dir=tmp_path, executor=RayExecutor(max_retries=0, torch_threads=1)
    )
    assert second.reused == 1 and [r.status for r in second.results] == ["ok", "ok"]
    assert second.results[1].started_at == other.started_at  # reused, not rerun
    assert second.results[0].retries == 0


@needs_ray
def test_cli_runs_on_ray_and_records_the_executor(cluster, suite_file, tmp_path):
    path = suite_file(
        "name: x\nmodels: [small_cnn]\nnum_classes: 10\nmatrix: {resolution: [12]}\nmeasure: [profile, speed]\n"
        "settings: {speed: {warmup_iters: 1, min_repeats: 3, min_time_s: 0.05}}\nray: {torch_threads: 1}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--executor", "ray", "--no-report"])
    assert result.exit_code == 0, result.output
    env = json.loads((out / "env.json").read_text())
    assert env["executor"]["name"] == "ray" and env["executor"]["torch_threads"] == 1
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["executor"]) == ["ray"] and list(csv["status"]) == ["ok"]
    assert list(csv["isolation"]) == [
        "process"
    ]  # a speed cell under isolation: auto gets a Ray worker of its own (max_calls=1)
    # the suite's default (local) when --executor is not given, into a fresh folder
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "local"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "local" / "env.json").read_text())["executor"]["name"] == "local"
    assert set(pd.read_csv(tmp_path / "local" / "results.csv")["executor"]) == {"local"}


@needs_ray
def test_an_error_outside_the_cell_fails_it_without_retrying(cluster, suite_file, tmp_path, monkeypatch):
    """Only a lost worker is retried: an exception in the task (here: a plugin module the worker cannot
    import) fails the cell once, with that exception as its reason."""
    import bench.execution.executors

    monkeypatch.setattr(bench.execution.executors, "plugin_modules", lambda: ["no_such_bench_plugin"])
    cells = expand(
        load_suite(
            suite_file(
                "name: x\nmodels: [small_cnn]\nnum_classes: 10\nmatrix: {resolution: [12]}\nmeasure: [profile]\n"
            )
        )
    )
    result = run_cells(
        cells,
        RunStore.create(tmp_path / "r"),
        torch.device("cpu"),
        executor=RayExecutor(max_retries=2, torch_threads=1),
    ).results[0]
    assert result.status == "failed" and result.executor == "ray" and result.retries is None
    assert "ModuleNotFoundError" in result.reason and "no_such_bench_plugin" in result.reason, result.reason
