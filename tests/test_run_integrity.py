"""Run integrity: training re-seeds from the cell's seed, the data is checked before any cell runs, and
`num_classes` defaults to the data's class count."""

from __future__ import annotations

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
