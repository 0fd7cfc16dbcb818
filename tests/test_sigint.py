"""Ctrl-C during `bench run` (a real SIGINT to a real process): the current cell stops, finished cells are
kept, the resume command is printed, exit code 130; the printed command then finishes the sweep."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd

from bench.suite.expand import expand
from bench.suite.load import load_suite

SUITE = textwrap.dedent(
    """
    name: sigint
    models: [resnet18, mobilenet_v2, efficientnet_b0]
    matrix: {resolution: [32], batch_size: [2]}
    measure: [speed]
    settings:
      speed: {warmup_iters: 1, min_repeats: 3, min_time_s: 4.0}   # long enough to be interrupted mid-cell
    """
)


def test_sigint_keeps_finished_cells_prints_resume_and_exits_130(tmp_path):
    suite = tmp_path / "sigint.yaml"
    suite.write_text(SUITE)
    planned = [c.id for c in expand(load_suite(suite))]
    run_dir = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--out", str(run_dir), "--no-report"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # SIGINT as a terminal gives it: an ignored SIGINT is inherited across exec, and Python
        # then installs no KeyboardInterrupt handler (the test runner's state must not decide)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = run_dir / "cells" / f"{planned[0]}.json"
    t0 = time.monotonic()
    while not first.is_file():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() - t0 < 300, "first cell did not finish in time"
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the second cell (>= 4 s of timing)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    output = " ".join((stdout + stderr).split())
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert f"interrupted: 1 of 3 cells finished and kept in {run_dir}" in output
    resume = f"bench run --resume {shlex.quote(str(run_dir))}"
    assert f"resume with: {resume}" in output

    cells = sorted(p.stem for p in (run_dir / "cells").glob("*.json"))
    assert cells == [planned[0]]  # the interrupted cell left no record
    kept = first.read_bytes()
    assert json.loads(kept)["status"] == "ok"
    assert list(pd.read_csv(run_dir / "results.csv")["id"]) == [planned[0]]
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]

    # the printed command, as printed, finishes the sweep without redoing the kept cell
    args = shlex.split(resume)[1:] + ["--no-report"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert first.read_bytes() == kept
    assert list(pd.read_csv(run_dir / "results.csv")["id"]) == planned
