"""Synthetic stand-ins for the standard datasets, of the same shape: classes, resolution, class balance
and train/test split sizes (`scale` shrinks every count alike).

Each class gets a learnable style from the synthetic-artists generator (a palette, a stroke direction and
texture, a composition), every image jittered, so a model must learn the style rather than memorise
pixels. The images are generated in memory, deterministically from the seed, once per process, and kept
on disk in the cache folder for later processes. A stand-in is labelled synthetic in its description and
in every result, console table and report (`SampleSet.synthetic`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.base import SampleSet

STANDIN_VERSION = 1


@dataclass(frozen=True)
class Shape:
    """What a stand-in copies from the real dataset."""

    title: str
    classes: tuple[str, ...]
    image_size: int
    train_per_class: int
    test_per_class: int  # 0: no given test split (a stratified validation split is drawn instead)


SHAPES = {
    "cifar10": Shape("CIFAR-10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"), 32, 5000, 1000),
    "stl10": Shape("STL-10", ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"), 96, 500, 800),
    # Kaggle's cats vs dogs: 12,500 photos a class, of varying size (about 350-500 px); rendered square here.
    "cats-vs-dogs": Shape("cats vs dogs", ("cat", "dog"), 128, 12500, 0),
}


def _counts(per_class: int, scale: float) -> int:
    return 0 if per_class == 0 else max(2, int(round(per_class * scale)))


def _generate(shape: Shape, scale: float, seed: int, image_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(images N x H x W x 3 uint8, labels, n_train): train images first, then test, classes interleaved."""
    from bench.data.synthetic import _styles, render

    rng = np.random.default_rng(seed)
    styles = _styles(len(shape.classes), rng)
    n_train, n_test = _counts(shape.train_per_class, scale), _counts(shape.test_per_class, scale)
    images, labels = [], []
    for count in (n_train, n_test):
        for i in range(count * len(shape.classes)):
            c = i % len(shape.classes)
            images.append(np.asarray(render(styles[c], image_size, rng), dtype=np.uint8))
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.int64), n_train * len(shape.classes)


def _cache_path(kind: str, params: dict) -> Path:
    from bench.data.synthetic import cache_dir

    key = hashlib.sha256(json.dumps({"v": STANDIN_VERSION, "kind": kind, **params}, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "datasets" / f"synthetic-{kind}-{key}.npz"


_MEMORY: dict[Path, tuple[np.ndarray, np.ndarray, int]] = {}


def standin(kind: str, *, scale: float = 1.0, seed: int = 0, image_size: int | None = None, why: str | None = None) -> SampleSet:
    """The stand-in for `kind` (a key of SHAPES) as a SampleSet, labelled synthetic; `why` (e.g. the real
    files were not found) goes into its description."""
    from bench.errors import InputError

    shape = SHAPES[kind]
    if not 0 < scale <= 1:
        raise InputError(f"synthetic scale must be in (0, 1] (got {scale})", field="data.options.synthetic.scale")
    size = int(image_size or shape.image_size)
    path = _cache_path(kind, {"scale": scale, "seed": seed, "image_size": size})
    if path not in _MEMORY:
        loaded = None
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    loaded = (z["images"].copy(), z["labels"].copy(), int(z["n_train"]))
            except (OSError, ValueError, KeyError):
                loaded = None
        if loaded is None:
            loaded = _generate(shape, scale, seed, size)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            try:
                np.savez(tmp, images=loaded[0], labels=loaded[1], n_train=loaded[2])
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)  # a cache that cannot be written is not an error
        _MEMORY[path] = loaded
    images, labels, n_train = _MEMORY[path]
    names = [shape.classes[i] for i in labels]
    split = "train" if shape.test_per_class else "all"
    keys = [f"synthetic-{kind}-{split if i < n_train else 'test'}-{i:06d}" for i in range(len(labels))]
    samples = SampleSet(
        keys=keys, labels=names, paths=[None] * len(keys), arrays=list(images), synthetic=True,
        description=(f"SYNTHETIC stand-in for {shape.title} ({len(shape.classes)} classes, balanced, {size}x{size} px, "
                     f"{len(keys)} images, scale {scale:g})" + (f"; {why}" if why else "")),
    )
    if shape.test_per_class:
        samples.notes.append(f"split:{n_train}")
    return samples
