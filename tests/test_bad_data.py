"""Bad data. What can be told without decoding an image (a missing file, column, class, root; too few images
for the splits or a batch) stops the run before any cell, exit 2, one line per data source naming the file
and the fix. A corrupt image is found when its cells decode it: those cells fail with the file named and the
rest of the sweep goes on. A good cell on images in grayscale, RGBA, CMYK and palette modes converts them
to RGB with a note."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.data.images import clear_memory_cache


def _image(path: Path, mode: str = "RGB", colour=(200, 30, 30), size=(20, 16)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = {"L": 90, "RGBA": (*colour, 0), "CMYK": (10, 200, 30, 0)}.get(mode, colour)
    img = Image.new(mode if mode != "P" else "RGB", size, fill)
    if mode == "P":
        img = img.convert("P", palette=Image.ADAPTIVE)
    img.save(path, "JPEG" if path.suffix == ".jpg" else "PNG")
    return path.name


def _csv(path: Path, rows, header=("id", "img_path", "artist")) -> str:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path.name


@pytest.fixture
def data(tmp_path):
    """A 2-class image set (6 per class) and every broken variant of it, as CSVs next to the suite."""
    rows = []
    modes = ["RGB", "L", "RGBA", "CMYK", "P", "RGB"]
    for c, colour in (("monet", (200, 30, 30)), ("vermeer", (30, 30, 200))):
        for i, mode in enumerate(modes):
            rel = f"img/{c}_{i}.{'jpg' if mode in ('RGB', 'CMYK') else 'png'}"
            _image(tmp_path / rel, mode, colour)
            rows.append((f"{c}{i}", rel, c))
    _csv(tmp_path / "good.csv", rows)
    _csv(tmp_path / "no_label_column.csv", [r[:2] for r in rows], header=("id", "img_path"))
    (tmp_path / "empty.csv").write_text("")
    _csv(tmp_path / "one_class.csv", [r for r in rows if r[2] == "monet"])
    _csv(tmp_path / "missing_image.csv", rows + [("gone", "img/gone.jpg", "monet")])
    truncated = tmp_path / "img/truncated.jpg"
    _image(truncated, size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:300])
    _csv(tmp_path / "truncated.csv", rows + [("t", "img/truncated.jpg", "monet")])
    (tmp_path / "img/notes.jpg").write_text("meeting notes, not a picture")
    _csv(tmp_path / "not_an_image.csv", rows + [("n", "img/notes.jpg", "vermeer")])
    _image(tmp_path / "outside.jpg")
    _csv(
        tmp_path / "img/escape.csv",
        [(r[0], r[1].removeprefix("img/"), r[2]) for r in rows] + [("x", "../outside.jpg", "monet")],
    )
    _csv(tmp_path / "val_unseen.csv", [("v", rows[0][1], "turner")])
    return tmp_path


def _entry(options: dict, **extra) -> str:
    return json.dumps({"name": "resnet18", **extra, "settings": {"train": {"data": {"options": options}}}})


# (case, model entry options / overrides, fragments of the reason)
CASES = [
    (
        "missing data root",
        {"csv": "good.csv", "root": "no_such_folder"},
        {},
        ["no_such_folder", "data.root: data root not found", "give the folder the image paths are relative to"],
    ),
    ("CSV not found", {"csv": "nope.csv"}, {}, ["nope.csv: CSV file not found", "give the path of the dataset's CSV"]),
    (
        "CSV missing a column",
        {"csv": "no_label_column.csv"},
        {},
        [
            "no_label_column.csv:1: CSV has no column 'artist' (columns: id, img_path)",
            "set data.path_column / data.label_column",
        ],
    ),
    (
        "empty CSV",
        {"csv": "empty.csv"},
        {},
        ["empty.csv:1: the CSV is empty", "expected a header with img_path,artist"],
    ),
    (
        "one-class label column",
        {"csv": "one_class.csv"},
        {},
        [
            "the label column has a single class ('monet') in CSV ",
            "one_class.csv",
            "classification needs at least two classes",
        ],
    ),
    (
        "image file missing",
        {"csv": "missing_image.csv"},
        {},
        ["listed image file not found:", "img/gone.jpg", "on_bad_image: skip"],
    ),
    ("truncated JPEG", {"csv": "truncated.csv"}, {}, ["img/truncated.jpg: bad image: corrupt or truncated image"]),
    (
        "non-image with an image extension",
        {"csv": "not_an_image.csv"},
        {},
        ["img/notes.jpg: bad image: not an image (unrecognised format)"],
    ),
    (
        "path escaping the data root",
        {"csv": "img/escape.csv"},
        {},
        [
            "escape.csv:14: image path '../outside.jpg' escapes the data root",
            "paths in the CSV must stay inside the data root",
        ],
    ),
    (
        "validation label unseen in training",
        {"csv": "good.csv", "val_csv": "val_unseen.csv"},
        {},
        [
            "val_unseen.csv:2: validation label 'turner' does not occur in training",
            "every validation class needs training images",
        ],
    ),
    (
        "batch larger than the dataset",
        {"csv": "good.csv"},
        {"batch_size": 64},
        ["batch size 64 is larger than the training set (6 images)", "use a smaller batch size"],
    ),
]


DECODED = ("truncated JPEG", "non-image with an image extension")  # found only when a cell decodes the image


def _suite(data: Path, name: str, models: list[str]) -> Path:
    suite = data / f"{name}.yaml"
    suite.write_text(
        textwrap.dedent(
            """
        name: {name}
        models:
        {models}
        num_classes: 2
        matrix: {{resolution: [16], batch_size: [4]}}
        measure: [train]
        settings:
          train: {{data: {{kind: csv, val_fraction: 0.3, hflip: false}}, epochs: 1, early_stopping: null}}
        """
        ).format(name=name, models="\n".join(f"  - {m}" for m in models))
    )
    return suite


def test_bad_data_stops_the_run_before_any_cell_naming_every_source(data):
    """Every problem that can be told without decoding, found together before anything runs: exit 2, one
    line per bad data source, no run directory written."""
    early = [c for c in CASES if c[0] not in DECODED]
    suite = _suite(data, "bad-data", [_entry(opts, **extra) for _, opts, extra, _ in early])
    out = data / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--no-report"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [" ".join(line.split()) for line in result.output.split("error: ")[1:]]
    assert len(errors) == len(early), result.output
    for case, _, _, fragments in early:
        assert any(all(f in e for f in fragments) for e in errors), f"{case}: {fragments} not in {errors}"
    assert not (out / "cells").is_dir() or not list((out / "cells").iterdir())


def test_bad_data_fails_its_cell_with_the_file_and_the_sweep_goes_on(data):
    clear_memory_cache()
    late = [c for c in CASES if c[0] in DECODED]
    suite = _suite(
        data, "bad-images", [_entry(opts, **extra) for _, opts, extra, _ in late] + [_entry({"csv": "good.csv"})]
    )
    out = data / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--no-report"])
    assert result.exit_code == 1, result.output  # failed cells: exit 1, not a crash
    assert "Traceback" not in result.output
    df = pd.read_csv(out / "results.csv")
    assert len(df) == len(late) + 1
    for i, (case, _, _, fragments) in enumerate(late):
        print(f"{case}: {df.loc[i, 'reason']}")
        assert df.loc[i, "status"] == "failed", case
        reason = df.loc[i, "reason"]
        assert reason.startswith("train: "), (case, reason)
        for fragment in fragments:
            assert fragment in reason, f"{case}: {fragment!r} not in {reason!r}"
        assert "Traceback" not in reason and "InputError" not in reason
    good = df.iloc[-1]
    assert good["status"] == "ok", good["reason"]
    assert good["train.n_train"] + good["train.n_val"] + good["train.n_test"] == 12
    cell = json.loads((out / "cells" / f"{good['id']}.json").read_text())
    assert cell["measurements"]["train"]["converted_to_rgb"] == {"CMYK": 2, "L": 2, "P": 2, "RGBA": 2}
    expected = "8 images converted to RGB (CMYK 2, L 2, P 2, RGBA 2; alpha composited on white)"
    assert cell["measurements"]["train"]["data_notes"] == expected
    assert expected in " ".join(result.output.split())  # the note is printed after the run
