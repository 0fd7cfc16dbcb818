"""Datasets: the synthetic stand-in, splits, the decoded-image cache, and every bad-data case."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.errors import InputError
from bench.data import CachedImages, decode_all, load_samples, make_loader, stratified_split
from bench.data.images import clear_memory_cache
from bench.data.synthetic import class_counts, generate


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    clear_memory_cache()
    yield
    clear_memory_cache()


def _image(path: Path, mode="RGB", size=(20, 12), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "CMYK":
        img = Image.new("CMYK", size, (10, 200, 30, 0))
    elif mode == "P":
        img = Image.new("RGB", size, colour).convert("P", palette=Image.ADAPTIVE)
    elif mode == "L":
        img = Image.new("L", size, 128)
    elif mode == "RGBA":
        img = Image.new("RGBA", size, (*colour, 0))  # fully transparent: composited on white
    else:
        img = Image.new(mode, size, colour)
    img.save(path, "PNG" if mode in ("RGBA", "P", "L") else "JPEG")
    return path


def _csv(root: Path, rows, name="data.csv", header=("id", "img_path", "artist")):
    path = root / name
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def _two_class_set(root: Path, n=4):
    rows = []
    for c in ("monet", "vermeer"):
        for i in range(n):
            rel = f"img/{c}_{i}.jpg"
            _image(root / rel, colour=(200, 30, 30) if c == "monet" else (30, 30, 200))
            rows.append((f"{c}{i}", rel, c))
    return rows


def test_synthetic_counts_are_the_founding_long_tail():
    counts = class_counts()
    assert len(counts) == 50 and sum(counts) == 5911 and counts[0] == 620 and counts[-1] == 25
    assert counts == sorted(counts, reverse=True)


def test_synthetic_generation_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", scale=0.02, image_size=16, seed=3)
    b = generate(tmp_path / "b", scale=0.02, image_size=16, seed=3)
    assert a.read_text() == b.read_text()
    first = a.read_text().splitlines()[1].split(",")[1]
    assert (a.parent / first).read_bytes() == (b.parent / first).read_bytes()
    samples = load_samples("csv", {"csv": str(a)}, tmp_path)
    assert len(samples.classes) == 50 and len(samples) == sum(max(2, round(c * 0.02)) for c in class_counts())


def test_synthetic_fallback_is_labelled(tmp_path):
    s = load_samples("csv", {"csv": None, "synthetic_fallback": {"scale": 0.02, "image_size": 16}}, tmp_path)
    assert s.synthetic and "SYNTHETIC" in s.description


def test_label_map_is_sorted_and_stable(tmp_path):
    rows = list(reversed(_two_class_set(tmp_path)))
    s = load_samples("csv", {"csv": str(_csv(tmp_path, rows))}, tmp_path)
    assert s.classes == ["monet", "vermeer"]
    assert list(s.label_indices()) == [1, 1, 1, 1, 0, 0, 0, 0]


def test_stratified_split_is_seeded_and_stratified():
    labels = np.repeat(np.arange(5), [50, 30, 10, 5, 2])
    tr1, va1 = stratified_split(labels, 0.2, seed=7)
    tr2, va2 = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(va1, va2) and len(np.intersect1d(tr1, va1)) == 0 and len(tr1) + len(va1) == 97
    assert set(np.bincount(labels[va1], minlength=5)[:3]) == {10, 6, 2}
    assert all(np.bincount(labels[tr1], minlength=5) > 0)
    _, va3 = stratified_split(labels, 0.2, seed=8)
    assert not np.array_equal(va1, va3)


def test_decoded_cache_decodes_once(tmp_path, monkeypatch):
    s = load_samples("csv", {"csv": str(_csv(tmp_path, _two_class_set(tmp_path)))}, tmp_path)
    first = decode_all(s, 16)
    assert first.images.shape == (8, 3, 16, 16) and first.images.dtype == torch.uint8
    assert decode_all(s, 16) is first  # memory
    import bench.data.images as images

    clear_memory_cache()
    monkeypatch.setattr(images, "decode_file", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    again = decode_all(s, 16)  # from the disk cache, no decoding
    assert torch.equal(again.images, first.images)


def test_colour_modes_are_converted_and_counted(tmp_path):
    rows = []
    for i, mode in enumerate(["L", "RGBA", "CMYK", "P", "RGB"]):
        ext = "png" if mode in ("RGBA", "P", "L") else "jpg"
        _image(tmp_path / f"m/{i}.{ext}", mode)
        rows.append((i, f"m/{i}.{ext}", "a" if i % 2 else "b"))
    s = load_samples("csv", {"csv": str(_csv(tmp_path, rows))}, tmp_path)
    d = decode_all(s, 8)
    assert d.images.shape == (5, 3, 8, 8)
    assert d.converted == {"L": 1, "RGBA": 1, "CMYK": 1, "P": 1}
    assert d.images[1].float().mean() == 255  # transparent RGBA composited on white


@pytest.mark.parametrize("case", ["missing", "truncated", "not_an_image"])
def test_bad_image_is_named_or_skipped(tmp_path, case):
    rows = _two_class_set(tmp_path)
    bad = tmp_path / "img/bad.jpg"
    if case == "truncated":
        _image(bad, size=(64, 64))
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    elif case == "not_an_image":
        bad.write_text("this is a text file with a .jpg name")
    rows.append(("bad", "img/bad.jpg", "monet"))
    s = load_samples("csv", {"csv": str(_csv(tmp_path, rows))}, tmp_path)
    with pytest.raises(InputError) as err:
        decode_all(s, 16)
    assert "bad.jpg" in str(err.value) and "on_bad_image: skip" in str(err.value)
    skipped = decode_all(s, 16, on_bad_image="skip")
    assert skipped.images.shape[0] == 8 and len(skipped.bad) == 1 and skipped.bad[0][0].endswith("bad.jpg")


def test_path_escaping_root_is_refused(tmp_path):
    rows = _two_class_set(tmp_path / "root") + [("x", "../secret.jpg", "monet")]
    with pytest.raises(InputError, match=r"escapes the data root") as err:
        load_samples("csv", {"csv": str(_csv(tmp_path / "root", rows))}, tmp_path)
    assert err.value.line == 10


@pytest.mark.parametrize(
    "rows, header, message",
    [
        ([], ("id", "img_path", "artist"), "header but no rows"),
        ([], None, "the CSV is empty"),
        ([("1", "a.jpg", "x")], ("id", "path", "artist"), "no column 'img_path'"),
    ],
)
def test_csv_problems(tmp_path, rows, header, message):
    path = _csv(tmp_path, rows, header=header)
    with pytest.raises(InputError, match=message):
        load_samples("csv", {"csv": str(path)}, tmp_path)


def test_validation_label_unseen_in_training(tmp_path):
    rows = _two_class_set(tmp_path)
    train = _csv(tmp_path, rows, "train.csv")
    _image(tmp_path / "img/x.jpg")
    val = _csv(tmp_path, [("v", "img/x.jpg", "turner")], "val.csv")
    with pytest.raises(InputError, match="validation label 'turner' does not occur in training") as err:
        load_samples("csv", {"csv": str(train), "val_csv": str(val)}, tmp_path)
    assert err.value.line == 2 and err.value.file.endswith("val.csv")


def test_digits_long_tail():
    s = load_samples("digits", {"imbalance": 20}, Path("."))
    counts = np.bincount(s.label_indices())
    assert counts[0] / counts[-1] == pytest.approx(20, rel=0.1)
    assert s.arrays[0].shape == (8, 8, 3)


def test_loader_batches_normalised_and_seeded():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(10)
    ds = CachedImages(images, labels, mean=(0, 0, 0), std=(1, 1, 1))
    x, y = next(iter(make_loader(ds, batch_size=4)))
    assert torch.allclose(x, images[:4].float() / 255) and list(y) == [0, 1, 2, 3]
    a = [b[1].tolist() for b in make_loader(ds, batch_size=5, shuffle=True, seed=3)]
    b = [b[1].tolist() for b in make_loader(ds, batch_size=5, shuffle=True, seed=3)]
    assert a == b and sorted(sum(a, [])) == list(range(10))
