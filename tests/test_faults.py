"""Faults while a sweep runs: a diverging loss, out of memory, an exception in a model's forward, the disk
filling up, a corrupted cell file found on resume. Each costs at most its own cell (or, for the disk,
stops the run cleanly), and nothing half-written is left. SIGINT is in test_sigint.py."""

from __future__ import annotations

import errno
import json
import os
import textwrap
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import bench.execution.cell as runner_mod
from bench.cli import app
from bench.core.errors import StorageError
from bench.core.files import atomic_write_text
from bench.execution.cell import release_memory
from bench.execution.sweep import run_cells
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite

FAST_SPEED = "settings: {speed: {warmup_iters: 1, min_repeats: 2, min_time_s: 0.0}}\n"


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _tmp_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


# -- NaN / inf loss ---------------------------------------------------------------------------------
DIVERGING = textwrap.dedent(
    """
    name: diverging
    models:
      - {name: resnet18, settings: {train: {optimizer: sgd, lr: 1.0e+30}}}   # weights blow up after step 1
      - resnet18
    num_classes: 10
    matrix: {resolution: [16], batch_size: [16]}
    measure: [train]
    settings:
      train: {data: {kind: digits, subset: 0.06, hflip: false, val_fraction: 0.3}, epochs: 1, early_stopping: null}
    """
)


def test_nan_loss_fails_its_cell_and_the_other_completes(suite_file, tmp_path):
    """The issue's 2-cell sweep: one cell's loss goes NaN, the other finishes; a rerun into the same
    directory redoes only the failed cell and changes nothing else."""
    cells = expand(load_suite(suite_file(DIVERGING)))
    store = RunStore.create(tmp_path / "run")
    summary = run_cells(cells, store, torch.device("cpu"))
    bad, good = summary.results
    assert bad.status == "failed"
    assert bad.reason == "train: diverged at epoch 1 step 2 (loss nan) — lower the learning rate or set grad_clip"
    assert bad.measurements["train"] == {"status": "failed", "reason": bad.reason.removeprefix("train: ")}
    assert good.status == "ok", good.reason
    assert not store.artifact_dir(bad.id).exists()  # no checkpoint or predictions of a diverged cell
    assert (store.artifact_dir(good.id) / "best.pt").is_file()
    df = pd.read_csv(store.run_dir / "results.csv")
    assert list(df["status"]) == ["failed", "ok"] and df.loc[0, "reason"] == bad.reason

    before = _snapshot(store.run_dir)
    again = run_cells(cells, store, torch.device("cpu"))
    assert again.reused == 1 and [r.status for r in again.results] == ["failed", "ok"]
    after = _snapshot(store.run_dir)
    assert set(after) == set(before)
    changed = {name for name in before if before[name] != after[name]}
    # only the failed cell's own record (new timestamps) and the table built from it are rewritten
    assert changed <= {f"cells/{bad.id}.json", "results.csv", "results.parquet"}  # parquet: its copy, changed
    assert json.loads(after[f"cells/{bad.id}.json"])["reason"] == bad.reason


def test_inf_loss_names_epoch_and_step(suite_file, tmp_path, monkeypatch):
    """An injected inf at the 7th training step of a run with 4 steps per epoch: epoch 2 step 3."""
    import bench.measure.train.loop as train_mod

    real = train_mod.make_loss
    calls = {"n": 0}

    def make_loss(strategy, counts):
        inner = real(strategy, counts)

        class Injected(torch.nn.Module):
            def forward(self, logits, y):
                calls["n"] += 1
                loss = inner(logits, y)
                return loss * float("inf") if calls["n"] == 7 else loss

        return Injected()

    monkeypatch.setattr(train_mod, "make_loss", make_loss)
    text = DIVERGING.replace(
        "  - {name: resnet18, settings: {train: {optimizer: sgd, lr: 1.0e+30}}}   # weights blow up after step 1\n", ""
    )
    text = text.replace("epochs: 1", "epochs: 3").replace("subset: 0.06", "subset: 0.1")
    cells = expand(load_suite(suite_file(text)))
    summary = run_cells(cells, RunStore.create(tmp_path / "run"), torch.device("cpu"))
    (result,) = summary.results
    n_train = 1797 * 0.1 * (1 - 0.3 - 0.2)  # ~90 training images (validation 0.3, test 0.2) at batch 16
    assert result.status == "failed", result.reason
    steps_per_epoch = round(n_train) // 16  # the last partial batch is dropped: 5 steps an epoch
    epoch, step = divmod(7 - 1, steps_per_epoch)
    assert result.reason.startswith(f"train: diverged at epoch {epoch + 1} step {step + 1} (loss inf)"), result.reason


# -- out of memory, and an exception in forward -------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "DefaultCPUAllocator: not enough memory: you tried to allocate 8589934592 bytes. Buy new RAM! out of memory"
        ),
    ],
    ids=["torch-oom", "runtime-error-oom"],
)
def test_out_of_memory_fails_the_cell_releases_memory_and_the_next_runs(suite_file, tmp_path, monkeypatch, error):
    suite = suite_file(
        "name: oom\nmodels: [resnet18, mobilenet_v2]\nmatrix: {resolution: [32], batch_size: [2]}\nmeasure: [speed]\n"
        + FAST_SPEED
    )
    cells = expand(load_suite(suite))
    built: list[weakref.ref] = []
    real_build = runner_mod.build_model

    def build_model(name, **kwargs):
        model = real_build(name, **kwargs)
        built.append(weakref.ref(model))
        if name == "resnet18":

            def forward(*args, **kw):
                raise error

            model.forward = forward
        return model

    alive_at_release: list[bool] = []
    real_release = runner_mod.release_memory

    def release(device):
        real_release(device)
        alive_at_release.append(built[-1]() is not None)

    monkeypatch.setattr(runner_mod, "build_model", build_model)
    monkeypatch.setattr(runner_mod, "release_memory", release)
    # in-process: the monkeypatches live in this process (process isolation: test_fidelity.py)
    summary = run_cells(cells, RunStore.create(tmp_path / "run"), torch.device("cpu"), isolation="none")
    oom, nxt = summary.results
    assert oom.status == "failed"
    assert oom.reason.startswith("speed: out of memory (") and oom.reason.endswith(
        "— lower the batch size or resolution"
    )
    assert str(error).splitlines()[0][:40] in oom.reason
    assert nxt.status == "ok" and nxt.measurements["speed"]["throughput_img_s"] > 0
    assert alive_at_release == [False, False]  # each cell's model was gone when memory was released


def test_release_memory_empties_the_cuda_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    release_memory(torch.device("cpu"))
    assert calls == []
    release_memory(torch.device("cuda"))
    assert calls == ["empty"]


def test_exception_in_forward_fails_only_that_cell(suite_file, tmp_path):
    # a ViT built for 224 px fed 32 px images: timm raises inside forward (a real model bug, no mock)
    text = (
        textwrap.dedent(
            """
        name: forward-error
        models:
          - resnet18
          - {name: vit_small_patch16_224, kwargs: {img_size: 224}}
          - mobilenet_v2
        matrix: {resolution: [32], batch_size: [2]}
        measure: [speed]
        """
        )
        + FAST_SPEED
    )
    summary = run_cells(expand(load_suite(suite_file(text))), RunStore.create(tmp_path / "run"), torch.device("cpu"))
    assert [r.status for r in summary.results] == ["ok", "failed", "ok"]
    assert summary.results[1].reason == "speed: AssertionError: Input height (32) doesn't match model (224)."
    assert "Traceback" in summary.results[1].traceback


# -- disk full --------------------------------------------------------------------------------------
def test_disk_full_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old,complete\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match=r"cannot write .*results.csv: No space left on device") as err:
        atomic_write_text(target, "new," * 10000)
    assert err.value.errno == errno.ENOSPC
    assert target.read_text() == "old,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_disk_full_during_a_run_stops_cleanly_and_resumes(suite_file, tmp_path, monkeypatch):
    suite = suite_file(
        "name: full\nmodels: [resnet18, mobilenet_v2]\nmatrix: {resolution: [32], batch_size: [1]}\nmeasure: [profile]\n"
    )
    cells = expand(load_suite(suite))
    out = tmp_path / "run"
    real_fsync = os.fsync
    second = f"{cells[1].id}.json"

    def fsync(fd):  # the disk fills up exactly when the second cell's result is written
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{second}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--no-report"])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError)
    assert f"cannot write {out}/cells/{second}: No space left on device" in output
    assert f"resume with: bench run --resume {out}" in output
    assert _tmp_files(out) == []
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == [f"{cells[0].id}.json"]
    assert json.loads((out / "cells" / f"{cells[0].id}.json").read_text())["status"] == "ok"
    assert list(pd.read_csv(out / "results.csv")["id"]) == [cells[0].id]  # the last complete table

    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed: resume
    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "--no-report"])
    assert resumed.exit_code == 0, resumed.output
    assert list(pd.read_csv(out / "results.csv")["status"]) == ["ok", "ok"]


# -- a corrupted or half-written cell file on resume ----------------------------------------------------
@pytest.mark.parametrize("damage", ["half-written", "garbage", "other-cell", "bad-status"])
def test_corrupt_cell_file_detected_and_rerun(suite_file, tmp_path, damage):
    suite = suite_file(
        "name: corrupt\nmodels: [resnet18, mobilenet_v2]\nmatrix: {resolution: [32], batch_size: [1]}\nmeasure: [profile]\n"
    )
    out = tmp_path / "run"
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--no-report"]).exit_code == 0
    first, second = (out / "cells" / f"{c.id}.json" for c in expand(load_suite(suite)))
    intact = first.read_bytes()
    text = second.read_text()
    if damage == "half-written":
        second.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        second.write_bytes(b"\x00\xff" * 64)
    elif damage == "other-cell":
        second.write_bytes(intact)
    else:
        second.write_text(text.replace('"status": "ok"', '"status": "done"', 1))
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "--no-report"])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"cell {second.stem}:" in output and "running it again" in output
    assert "1 reused from an earlier run" in output
    assert first.read_bytes() == intact  # the sound cell was not redone
    redone = json.loads(second.read_text())
    assert redone["id"] == second.stem and redone["status"] == "ok"
    assert list(pd.read_csv(out / "results.csv")["status"]) == ["ok", "ok"]
