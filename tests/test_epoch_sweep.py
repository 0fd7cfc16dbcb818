"""Epoch sweeps: cells that differ only in `train.epochs` train once, and report what separate runs would."""

import textwrap

import pandas as pd
import torch

import bench.execution.executors as executors_module
from bench.execution.epochs import shared_training_groups
from bench.execution.sweep import run_cells
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite
from tests.cell_factory import train_wall_clock_keys

SUITE = textwrap.dedent(
    """
    name: epoch-sweep
    models: [{{name: small_cnn, kwargs: {{filters: 8, dense: 64}}}}]
    num_classes: 10
    matrix:
      resolution: [12]
      batch_size: [32]
      seed: [3]
      train.epochs: {epochs}
    measure: [profile, train]
    settings:
      train:
        data: {{kind: digits, val_fraction: 0.3, subset: 0.5}}
        lr: 0.003
        scheduler: plateau
        early_stopping: {early}
    """
)

TIMING = train_wall_clock_keys()


def _run(suite_file, tmp_path, name, epochs, early="null"):
    suite = load_suite(suite_file(SUITE.format(epochs=epochs, early=early), name=f"{name}.yaml"))
    cells = expand(suite)
    store = RunStore.create(tmp_path / name)
    return cells, run_cells(cells, store, torch.device("cpu"), base_dir=tmp_path), store


def _comparable(train: dict) -> dict:
    """A train result without wall-clock timings and the sharing notes."""
    out = {
        k: v
        for k, v in train.items()
        if k not in TIMING + ("trained_in_cell", "shared_training", "serves_epochs", "checkpoint")
    }
    out["curves"] = [
        {k: v for k, v in row.items() if k not in ("epoch_time_s", "train_img_s")} for row in train["curves"]
    ]
    return out


def test_epoch_sweep_trains_once_and_matches_separate_runs(suite_file, tmp_path, monkeypatch):
    trained = []
    real = executors_module.run_cell

    def counting(cell, *args, **kwargs):
        trained.append(cell.settings["train"]["epochs"])
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(executors_module, "run_cell", counting)  # every training run, an epoch sweep's included
    cells, summary, store = _run(suite_file, tmp_path, "sweep", "[1, 2, 3]")
    assert len(cells) == 3 and len({c.id for c in cells}) == 3
    assert [len(g) for g in shared_training_groups(cells)] == [3]
    assert trained == [3]  # one training run, of the longest
    by_epochs = {r.cell.settings["train"]["epochs"]: r for r in summary.results}
    assert all(r.status == "ok" for r in summary.results), [r.reason for r in summary.results]
    assert by_epochs[3].measurements["train"]["serves_epochs"] == [1, 2]
    for e in (1, 2):
        train = by_epochs[e].measurements["train"]
        assert train["trained_in_cell"] == by_epochs[3].id and "served this cell" in train["shared_training"]
        assert by_epochs[e].measurements["profile"]["shared_with"] == by_epochs[3].id
    assert by_epochs[3].measurements["train"]["macro_f1"] > 0.3  # it learns: chance is 0.1

    separate = {}
    for e in (1, 2, 3):
        trained.clear()
        _, alone, alone_store = _run(suite_file, tmp_path, f"alone{e}", f"[{e}]")
        assert trained == [e]
        separate[e] = (alone.results[0], alone_store)
    for e in (1, 2, 3):
        shared, alone = by_epochs[e], separate[e][0]
        assert shared.id == alone.id  # the same cell
        assert _comparable(shared.measurements["train"]) == _comparable(alone.measurements["train"])
        assert len(shared.measurements["train"]["curves"]) == e
        # the saved predictions and checkpoint are those of the separate run, too
        a = pd.read_csv(store.artifact_dir(shared.id) / "predictions.csv")
        b = pd.read_csv(separate[e][1].artifact_dir(alone.id) / "predictions.csv")
        pd.testing.assert_frame_equal(a, b)
        sa = torch.load(store.artifact_dir(shared.id) / "best.pt", weights_only=True)
        sb = torch.load(separate[e][1].artifact_dir(alone.id) / "best.pt", weights_only=True)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_no_sharing_with_early_stopping(suite_file, tmp_path):
    suite = load_suite(suite_file(SUITE.format(epochs="[1, 2]", early="{patience: 2}")))
    assert shared_training_groups(expand(suite)) == []
