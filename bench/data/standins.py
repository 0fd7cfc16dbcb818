"""Synthetic stand-ins for the standard datasets, of the same shape: classes, resolution, class balance
and train/test split sizes (`scale` shrinks every count alike).

Each class gets a learnable style from the synthetic-artists generator (a stroke direction and texture,
a composition), every image jittered and given a random palette, so colour says nothing about the class
and a model must learn shapes rather than memorise pixels or colours. Each image is rendered when first needed, deterministically from (seed, index), and the
decoded-image cache keeps it for later cells and processes. A stand-in is labelled synthetic in its description and
in every result, console table and report (`SampleSet.synthetic`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.core.errors import InputError
from bench.data.base import SampleSet
from bench.data.synthetic import _styles, render

STANDIN_VERSION = 2


@dataclass(frozen=True)
class Shape:
    """What a stand-in copies from the real dataset."""

    title: str
    classes: tuple[str, ...]
    image_size: int
    train_per_class: int
    test_per_class: int  # 0: no given test split (a stratified validation split is drawn instead)


SHAPES = {
    "cifar10": Shape(
        "CIFAR-10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        32,
        5000,
        1000,
    ),
    "stl10": Shape(
        "STL-10", ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"), 96, 500, 800
    ),
    # Kaggle's cats vs dogs: 12,500 photos a class, of varying size (about 350-500 px); rendered square here.
    "cats-vs-dogs": Shape("cats vs dogs", ("cat", "dog"), 128, 12500, 0),
}


def _counts(per_class: int, scale: float) -> int:
    return 0 if per_class == 0 else max(2, int(round(per_class * scale)))


class LazyImages(Sequence):
    """The stand-in's images, rendered on first access: image i from its own generator (seed, i), so a
    subset renders only its own images, in any order, in any process, identically."""

    def __init__(
        self, styles: list[dict], labels: np.ndarray, size: int, seed: int, index: np.ndarray | None = None
    ) -> None:
        self.styles, self.labels, self.size, self.seed = styles, labels, size, seed
        # positions in the full stand-in (not `self.index`, which would hide Sequence.index)
        self.positions = np.arange(len(labels)) if index is None else index

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = int(self.positions[i])
        rng = np.random.default_rng([self.seed, n])
        # Colour carries no class information (a random palette per image): a class is its strokes'
        # direction, length, width and density and its composition, which a model must learn from shapes.
        style = {
            **self.styles[int(self.labels[n])],
            "hue": float(rng.uniform()),
            "hue_spread": float(rng.uniform(0.05, 0.25)),
            "dark": bool(rng.random() < 1 / 3),
        }
        return np.asarray(render(style, self.size, rng), dtype=np.uint8)

    def take(self, idx) -> LazyImages:
        """A subset, still lazy."""
        return LazyImages(
            self.styles, self.labels, self.size, self.seed, self.positions[np.asarray(idx, dtype=np.int64)]
        )


def standin(
    kind: str, *, scale: float = 1.0, seed: int = 0, image_size: int | None = None, why: str | None = None
) -> SampleSet:
    """The stand-in for `kind` (a key of SHAPES) as a SampleSet, labelled synthetic; `why` (e.g. the real
    files were not found) goes into its description. Train images come first, then test ones (the given
    split), classes interleaved; images are rendered when first decoded (see LazyImages), so `subset`
    costs only what it keeps, and the decoded-image cache keeps them for later runs."""
    shape = SHAPES[kind]
    if not 0 < scale <= 1:
        raise InputError(f"synthetic scale must be in (0, 1] (got {scale})", field="data.options.synthetic.scale")
    size = int(image_size or shape.image_size)
    k = len(shape.classes)
    n_train, n_test = _counts(shape.train_per_class, scale) * k, _counts(shape.test_per_class, scale) * k
    labels = np.arange(n_train + n_test) % k
    styles = _styles(k, np.random.default_rng(seed))
    split = "train" if shape.test_per_class else "all"
    keys = [f"synthetic-{kind}-{split if i < n_train else 'test'}-{i:06d}" for i in range(len(labels))]
    samples = SampleSet(
        keys=keys,
        labels=[shape.classes[c] for c in labels],
        paths=[None] * len(keys),
        arrays=LazyImages(styles, labels, size, seed),
        synthetic=True,
        description=(
            f"SYNTHETIC stand-in for {shape.title} ({k} classes, balanced, {size}x{size} px, "
            f"{len(keys)} images, scale {scale:g})" + (f"; {why}" if why else "")
        ),
        content_id=f"standin-v{STANDIN_VERSION}:{kind}:seed={seed}:size={size}",
    )
    if shape.test_per_class:
        samples.notes.append(f"split:{n_train}")
    return samples
