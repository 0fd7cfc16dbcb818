"""End-to-end inference through the real data path, beside the model alone (bench.measure.train.datapath).

A suite on a CSV of 224 px JPEGs written here: the trained cell times its test images read from their files,
decoded, resized, normalised and batched, then the model. The decoding part is cross-checked with a plain
loop over the same files with PIL (no bench code in the timed part), and the report shows tensor-only,
model-only and end-to-end side by side, in Markdown and in headless Chromium.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES, PER_CLASS, SIZE = 3, 10, 224

SUITE = """
name: jpeg-data-path
models: [{name: small_cnn, kwargs: {filters: 4, convs_per_block: 1, pool_size: 4, dense: 32}}]
matrix: {resolution: [224], batch_size: [8], precision: [fp32]}
measure: [profile, speed, train]
settings:
  speed: {warmup_iters: 2, min_repeats: 5, min_time_s: 0.3}
  train:
    data: {kind: csv, options: {csv: images.csv, label_column: label, path_column: path}, val_fraction: 0.2, test_fraction: 0.3}
    epochs: 1
    lr: 0.001
    end_to_end_min_time_s: 0.5
"""


def _write_jpegs(folder: Path) -> Path:
    """Photograph-like 224 px JPEGs (smooth gradients plus grain: what a camera's JPEG costs to decode)."""
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    for c in range(CLASSES):
        for i in range(PER_CLASS):
            base = np.stack([xx * (c + 1) % 1, yy, (xx + yy) / 2], axis=-1) * 200
            img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            rel = f"img/{c}_{i}.jpg"
            (folder / "img").mkdir(exist_ok=True)
            Image.fromarray(img).save(folder / rel, quality=90)
            rows.append((rel, f"class_{c}"))
    with open(folder / "images.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return folder / "images.csv"


@pytest.fixture(scope="module")
def jpeg_run(tmp_path_factory):
    from bench import api

    folder = tmp_path_factory.mktemp("jpegs")
    _write_jpegs(folder)
    (folder / "suite.yaml").write_text(SUITE)
    run = api.run(folder / "suite.yaml", out=folder / "run", isolation="none")
    return folder, run


def _train_record(run_dir: Path) -> dict:
    (cell,) = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert cell["status"] == "ok", cell.get("reason")
    return cell["measurements"]


def _plain_decode_ms(paths: list[Path], batch: int) -> float:
    """A plain loop: PIL open + RGB + resize + stack as float, per batch of `batch` files, median over batches."""
    times = []
    for _ in range(2):
        for start in range(0, len(paths) - batch + 1, batch):
            t0 = time.perf_counter()
            arrays = []
            for p in paths[start : start + batch]:
                with Image.open(p) as im:
                    arrays.append(np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)))
            np.stack(arrays).astype(np.float32)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) * 1e3


def test_end_to_end_beside_model_only_where_decoding_costs(jpeg_run):
    folder, run = jpeg_run
    m = _train_record(run.run_dir)
    train, speed = m["train"], m["speed"]
    detail = train["data_path"]
    assert detail["images_from"] == "files" and detail["test_images"] == train["n_test"] == 9
    assert detail["batch_size"] == 8 and detail["batches_timed"] >= 3 and detail["loader_workers"] == 0
    # the three figures side by side; decoding 224 px JPEGs costs a visible share of each batch
    e2e, alone, tensor = train["end_to_end_img_s"], train["model_only_img_s"], speed["throughput_img_s"]
    assert 0 < e2e < alone and train["end_to_end_ratio"] == pytest.approx(e2e / alone)
    assert train["data_path_share"] == pytest.approx(1 - train["end_to_end_ratio"])  # the parts add up
    assert train["data_path_share"] > 0.1, detail  # a light model at 224 px: 0.44 quiet, 0.25 beside a test run
    # the model on real decoded batches and on speed's random tensor: the same model and shape, timed apart
    # (seconds apart, on a shared machine: 3.2x apart once under a load average of 4)
    assert 0.2 < alone / tensor < 5, (alone, tensor)
    # the data wait against a plain PIL loop over the same files, timed here (no bench code in it)
    test_paths = sorted((folder / "img").glob("*.jpg"))[: detail["test_images"]]
    plain = _plain_decode_ms(test_paths * 2, 8)
    assert 0.33 < detail["median_data_ms"] / plain < 3, (detail["median_data_ms"], plain)


def test_the_report_shows_the_data_path_in_markdown_and_chromium(jpeg_run):
    folder, run = jpeg_run
    md = (run.run_dir / "report.md").read_text()
    part = md.split("## Data path")[1].split("\n## ")[0]
    assert "| tensor-only img/s | model-only img/s | end-to-end img/s |" in part
    row = next(line for line in part.splitlines() if line.startswith("| small_cnn"))
    assert "224px bs=8 fp32" in row and "—" not in row
    from tests.browser import chromium_driver

    driver, reason = chromium_driver()
    if driver is None:
        pytest.skip(reason)
    try:
        driver.get((run.run_dir / "report.html").resolve().as_uri())
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#data_path tbody td')).map(td => td.innerText)"
        )
        assert cells[0] == "small_cnn" and len(cells) == 8, cells
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


def test_end_to_end_off_and_energy_unavailable_are_recorded(tmp_path):
    """`end_to_end: false` records no data-path figure; training energy says why it is unavailable here."""
    from bench import api
    from bench.platform.energy import EnergyMeter

    _write_jpegs(tmp_path)
    (tmp_path / "suite.yaml").write_text(
        SUITE.replace("end_to_end_min_time_s: 0.5", "end_to_end: false").replace("[profile, speed, train]", "[train]")
    )
    run = api.run(tmp_path / "suite.yaml", out=tmp_path / "run", isolation="none", report=False)
    train = _train_record(run.run_dir)["train"]
    assert "end_to_end_img_s" not in train and "data_path" not in train
    meter = EnergyMeter("cpu")
    if meter.sources:
        assert train["energy_j_per_image"] is None or train["energy_j_per_image"] > 0
    else:
        assert train["energy_j_per_image"] is None and train["energy"]["unavailable"] == meter.reason
