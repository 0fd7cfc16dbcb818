"""Selection and reporting never share an image: for every data source, and for the cells an epoch sweep
reads off a longer run, the keys of the saved validation predictions (what chose the checkpoint) and of
the test predictions (what every reported metric comes from) are disjoint, and the reported macro-F1 is
scikit-learn's on the test predictions, exactly."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score
from test_standard_data import fake_cifar10

from bench.execution.sweep import run_cells
from bench.store.run_store import RunStore
from bench.suite import expand, load_suite

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]


def _images(folder, per_class=8):
    """Small PNGs of three colours: (relative path, class name) per image."""
    rows = []
    for k, colour in enumerate(COLOURS):
        for i in range(per_class):
            path = folder / f"c{k}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            jitter = np.random.default_rng(k * 100 + i).integers(-20, 20, size=3)
            Image.new("RGB", (20, 20), tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter))).save(path)
            rows.append((f"c{k}/{i}.png", f"c{k}"))
    return rows


def _csv(tmp_path):
    rows = _images(tmp_path / "imgs")
    lines = ["id,img_path,artist"] + [f"{i},imgs/{p},{c}" for i, (p, c) in enumerate(rows)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    return "{kind: csv, options: {csv: data.csv}}", 3


def _imagefolder(tmp_path):
    _images(tmp_path / "folder")
    return "{kind: imagefolder, options: {root: folder}}", 3


def _cifar10(tmp_path):
    fake_cifar10(tmp_path / "data")
    return "{kind: cifar10, options: {root: data}}", 10


def _stl10(tmp_path):
    """STL-10 in its binary layout (stl10_binary/{train,test}_{X,y}.bin): 3 images a class in train, 2 in test."""
    folder = tmp_path / "data" / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("test", 2)):
        labels = np.repeat(np.arange(1, 11, dtype=np.uint8), per_class)  # 1..10, as the real files
        rng.integers(0, 256, size=len(labels) * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        labels.tofile(folder / f"{split}_y.bin")
    return "{kind: stl10, options: {root: data}, val_fraction: 0.34}", 10


SOURCES = {
    "csv": _csv,
    "imagefolder": _imagefolder,
    "digits": lambda tmp: ("{kind: digits, options: {imbalance: 3}}", 10),
    "synthetic-artists": lambda tmp: ("{kind: synthetic-artists, options: {scale: 0.15, image_size: 16}}", 50),
    "synthetic-cifar10": lambda tmp: ("{kind: synthetic-cifar10, options: {scale: 0.02, image_size: 16}}", 10),
    "synthetic-stl10": lambda tmp: ("{kind: synthetic-stl10, options: {scale: 0.05, image_size: 16}}", 10),
    "synthetic-cats-vs-dogs": lambda tmp: (
        "{kind: synthetic-cats-vs-dogs, options: {scale: 0.002, image_size: 16}}",
        2,
    ),
    "cifar10 files": _cifar10,
    "stl10 files": _stl10,
}


def _train(suite_file, tmp_path, data: str, classes: int, axes: str = ""):
    text = textwrap.dedent(
        f"""
        name: held-out
        models: [small_cnn]
        num_classes: {classes}
        matrix: {{resolution: [16], batch_size: [4]{axes}}}
        measure: [train]
        settings:
          train:
            data: {data}
            epochs: 1
            lr: 0.003
            early_stopping: null
        """
    )
    cells = expand(load_suite(suite_file(text)))
    store = RunStore.create(tmp_path / "run")
    summary = run_cells(cells, store, torch.device("cpu"), base_dir=tmp_path, isolation="none")
    return summary.results, store


def _check_disjoint(result, store):
    assert result.status == "ok", result.reason
    train = result.measurements["train"]
    folder = store.artifact_dir(result.id)
    test = pd.read_csv(folder / train["predictions_file"])
    val = pd.read_csv(folder / train["val_predictions_file"])
    assert train["evaluated_on"] == "test" and len(test) == train["n_test"] > 0 and len(val) == train["n_val"] > 0
    assert not set(test["key"]) & set(val["key"]), "an image was used for selection and for the reported figures"
    labels = list(range(len(train["label_map"])))
    f1 = f1_score(test["true_index"], test["pred_index"], labels=labels, average="macro", zero_division=0)
    assert f1 == train["macro_f1"]
    return set(test["key"]), set(val["key"])


@pytest.mark.parametrize("source", list(SOURCES))
def test_selection_and_reporting_images_are_disjoint(source, suite_file, tmp_path):
    data, classes = SOURCES[source](tmp_path)
    (result,), store = _train(suite_file, tmp_path, data, classes)
    test_keys, val_keys = _check_disjoint(result, store)
    if source.endswith(" files"):  # the source's own test files are the test set; validation from training files
        prefix = source.split()[0] + "-test-"
        assert all(k.startswith(prefix) for k in test_keys)
        assert not any(k.startswith(prefix) for k in val_keys)


def test_epoch_sweep_taps_keep_selection_and_reporting_apart(suite_file, tmp_path):
    """The 1-epoch cell read off the 3-epoch run reports the test predictions of the checkpoint chosen on
    validation up to its own epoch: disjoint keys, the same test images as the trained cell."""
    results, store = _train(
        suite_file, tmp_path, "{kind: digits, options: {imbalance: 3}}", 10, axes=", train.epochs: [1, 3]"
    )
    short, long = sorted(results, key=lambda r: r.measurements["train"]["epochs_run"])
    assert short.measurements["train"].get("trained_in_cell") == long.id
    keys = [_check_disjoint(r, store) for r in (short, long)]
    assert keys[0] == keys[1]
