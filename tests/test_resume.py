"""A run killed with SIGKILL at three points resumes to every cell exactly once, results.csv consistent with
the cell files; finished cells are not redone; a second writer is locked out."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from bench.core.errors import InputError
from bench.execution.sweep import run_cells
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite

SUITE = textwrap.dedent(
    """
    name: resume
    models: [resnet18, mobilenet_v2, efficientnet_b0]
    matrix: {resolution: [32, 48], batch_size: [4]}
    measure: [profile, speed]
    settings:
      speed: {warmup_iters: 2, min_repeats: 5, min_time_s: 0.4}
    """
)


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", *args, "--no-report"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _cell_files(run_dir):
    folder = run_dir / "cells"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _kill_when(proc, condition, timeout=240.0):
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before the kill point: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("kill point not reached in time")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def test_sigkill_at_three_points_then_resume(tmp_path):
    suite = tmp_path / "resume.yaml"
    suite.write_text(SUITE)
    run_dir = tmp_path / "run"
    planned = [c.id for c in expand(load_suite(suite))]
    assert len(planned) == 6

    # 1: killed right after the plan is written, before any cell has finished
    _kill_when(_start([str(suite), "--out", str(run_dir)], tmp_path), lambda: (run_dir / "plan.json").is_file())
    assert len(_cell_files(run_dir)) == 0
    # 2: resumed with --resume, killed after two cells
    _kill_when(_start(["--resume", str(run_dir)], tmp_path), lambda: len(_cell_files(run_dir)) >= 2)
    after_two = {p.name: p.read_bytes() for p in _cell_files(run_dir)}
    # 3: resumed by running the suite into the same folder, killed after four
    _kill_when(_start([str(suite), "--out", str(run_dir)], tmp_path), lambda: len(_cell_files(run_dir)) >= 4)
    assert 4 <= len(_cell_files(run_dir)) < 6

    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--resume", str(run_dir), "--no-report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reused from an earlier run" in done.stdout

    files = _cell_files(run_dir)
    assert sorted(p.stem for p in files) == sorted(planned)  # every cell exactly once
    for name, content in after_two.items():  # finished cells were not redone
        assert (run_dir / "cells" / name).read_bytes() == content
    df = pd.read_csv(run_dir / "results.csv")
    assert list(df["id"]) == planned and df["id"].is_unique
    for _, row in df.iterrows():
        cell = json.loads((run_dir / "cells" / f"{row['id']}.json").read_text())
        assert row["status"] == cell["status"] == "ok"
        assert row["speed.throughput_img_s"] == pytest.approx(
            cell["measurements"]["speed"]["throughput_img_s"], rel=1e-12
        )
        assert row["profile.params"] == cell["measurements"]["profile"]["params"]
    assert not list(run_dir.rglob("*.tmp"))


def test_second_writer_is_locked_out(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    cells = expand(load_suite(suite))[:1]
    store = RunStore.create(tmp_path / "run")
    with store.lock():
        with pytest.raises(InputError, match="another bench run .* is writing this run directory"):
            run_cells(cells, RunStore(tmp_path / "run"), torch.device("cpu"))
    # released: the run goes through
    assert run_cells(cells, store, torch.device("cpu")).count("ok") == 1


def test_stale_temp_files_are_removed_under_the_lock(tmp_path):
    store = RunStore.create(tmp_path / "run")
    stale = store.cells_dir / ".abc.json.123.tmp"
    stale.write_text("{half")
    with store.lock():
        assert not stale.exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--resume", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no plan.json" in proc.stderr and "Traceback" not in proc.stderr


def _snapshot(run_dir):
    """Every file of a run directory: its bytes and modification time."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def test_a_second_run_into_a_held_directory_changes_none_of_the_first_runs_files(tmp_path):
    """The lock is the first thing a run takes: a second `bench run` (another suite) into the directory a
    running one holds is refused before it writes anything. The first run is paused (SIGSTOP) while its lock
    is held, so that nothing but the second run could change a file meanwhile."""
    tiny = textwrap.dedent(
        """
        name: held
        models: [small_cnn]
        matrix: {resolution: [16], batch_size: [4]}
        measure: [profile, speed]
        isolation: none
        settings:
          speed: {warmup_iters: 1, min_repeats: 2, min_time_s: 0.0}
        """
    )
    suite = tmp_path / "held.yaml"
    suite.write_text(tiny)
    other = tmp_path / "other.yaml"
    other.write_text(tiny.replace("name: held", "name: other").replace("resolution: [16]", "resolution: [24]"))
    run_dir = tmp_path / "run"
    first = _start([str(suite), "--out", str(run_dir)], tmp_path)
    try:
        t0 = time.monotonic()
        while not (run_dir / "plan.json").is_file():
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() - t0 < 240, "the first run did not start"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)
        before = _snapshot(run_dir)
        assert {"suite.yaml", "suite.resolved.json", "env.json", "fingerprint.json", "plan.json"} <= set(before)
        second = subprocess.run(
            [sys.executable, "-m", "bench", "run", str(other), "--out", str(run_dir), "--no-report"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 2, second.stderr
        assert f"another bench run (pid {first.pid}) is writing this run directory" in " ".join(second.stderr.split())
        assert _snapshot(run_dir) == before
        assert "name: held" in (run_dir / "suite.yaml").read_text()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()[-2000:]
    assert len(_cell_files(run_dir)) == 1 and len(list((run_dir / "env-history").glob("*.json"))) == 1


def test_new_run_directories_are_created_atomically(tmp_path):
    """Two runs started in the same second get two directories: mkdir without exist_ok, the next name tried."""
    from datetime import datetime, timezone

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    stores = [RunStore.new_in(tmp_path, "s", now=now) for _ in range(3)]
    assert [s.run_dir.name for s in stores] == ["20260102-030405", "20260102-030405-2", "20260102-030405-3"]


def _csv_data(folder, name, classes=("monet", "vermeer"), per_class=5):
    from PIL import Image

    rows = ["id,img_path,artist"]
    for k, label in enumerate(classes):
        for i in range(per_class):
            rel = f"img/{label}_{i}.png"
            (folder / "img").mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), (40 * k, 200 - 30 * i, 90)).save(folder / rel)
            rows.append(f"{label}{i},{rel},{label}")
    (folder / name).write_text("\n".join(rows) + "\n")


EDITABLE = textwrap.dedent(
    """
    name: edited
    models: [{model}]
    matrix: {{resolution: [8], batch_size: [2]}}
    measure: [train]
    isolation: none
    settings:
      train: {{data: {{kind: csv, options: {{csv: {csv}}}, hflip: false}}, epochs: 1, early_stopping: null}}
    """
)


def test_a_resume_that_would_run_something_else_is_refused_naming_it(tmp_path):
    """A run directory records its fingerprint; rerunning into it with another model or another data file is
    refused (exit 2) with what differs, writing nothing; the unchanged suite resumes as before; --force-resume
    runs the new plan there and its results and reports read only the new plan's cells."""
    from typer.testing import CliRunner

    from bench.cli import app

    _csv_data(tmp_path, "a.csv")
    _csv_data(tmp_path, "b.csv", classes=("monet", "vermeer", "turner"))
    suite = tmp_path / "edited.yaml"
    run_dir = tmp_path / "run"

    def run(model="small_cnn", csv="a.csv", *extra):
        suite.write_text(EDITABLE.format(model=model, csv=csv))
        return CliRunner().invoke(app, ["run", str(suite), "--out", str(run_dir), "--no-report", *extra])

    first = run()
    assert first.exit_code == 0, first.output
    before = {k: v for k, v in _snapshot(run_dir).items() if k != ".lock"}  # the lock says who took it last
    for args, named in (
        (("resnet18",), 'models[0].name: "small_cnn" -> "resnet18"'),
        (("small_cnn", "b.csv"), 'settings.train.data.options.csv: "a.csv" -> "b.csv"'),
    ):
        refused = run(*args)
        text = " ".join(refused.output.split())
        assert refused.exit_code == 2, text
        assert "this run directory holds a run of something else: the plan (1 cells added, 1 removed" in text
        assert named in text and "--force-resume" in text
        assert {k: v for k, v in _snapshot(run_dir).items() if k != ".lock"} == before  # nothing written
    # the same data file, edited in place: same plan, another content
    (tmp_path / "a.csv").write_text((tmp_path / "a.csv").read_text() + "extra,img/monet_0.png,vermeer\n")
    refused = run()
    assert refused.exit_code == 2 and "data source 'CSV" in refused.output and "samples 10 -> 11" in refused.output
    (tmp_path / "a.csv").write_text("\n".join((tmp_path / "a.csv").read_text().splitlines()[:-1]) + "\n")
    os.utime(tmp_path / "a.csv", ns=(0, 0))  # the mtime is not part of a CSV's identity, its rows and images are
    again = run()
    assert again.exit_code == 0, again.output
    assert "1 reused from an earlier run" in " ".join(again.output.split())
    assert len(list((run_dir / "env-history").glob("*.json"))) == 2  # one per start and resume, none overwritten

    forced = run("resnet18", "a.csv", "--force-resume")
    assert forced.exit_code == 0, forced.output
    new_ids = json.loads((run_dir / "plan.json").read_text())["cell_ids"]
    assert len(_cell_files(run_dir)) == 2  # the old plan's cell is still on disk ...
    assert [r.id for r in RunStore(run_dir).read_cells()] == new_ids  # ... but no longer read
    assert list(pd.read_csv(run_dir / "results.csv")["model"]) == ["resnet18"]
    assert json.loads((run_dir / "fingerprint.json").read_text())["forced_over"]
