"""Datasets as plain data: a list of labelled samples, where each image comes from, and how to split.

A dataset kind (`csv`, `imagefolder`, `digits`, `synthetic-artists`) turns its options into a
`SampleSet`: sample keys, label names, and for each sample either a file path or an in-memory array.
Decoding, resizing and caching happen in `bench.data.images`; batching in `bench.data.loader`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import InputError, did_you_mean

# the normalisation torchvision's and timm's ImageNet weights expect (a training setting's default)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SampleSet:
    """Labelled samples. `paths[i]` is a file, or None when `arrays[i]` holds the image (HxWx3 uint8)."""

    keys: list[str]
    labels: list[str]
    paths: list[Path | None]
    arrays: Sequence[np.ndarray | None] | None = None  # a list, or a lazy sequence with `take` (LazyImages)
    synthetic: bool = False
    description: str = ""
    notes: list[str] = field(default_factory=list)
    # Generated data: what identifies the generator (its version and parameters); with the keys and labels
    # it identifies the content, so the content need not be generated to be fingerprinted.
    content_id: str | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def classes(self) -> list[str]:
        """Sorted label names: the label <-> index map is stable across runs and machines."""
        return sorted(set(self.labels))

    def label_indices(self, classes: list[str] | None = None) -> np.ndarray:
        index = {c: i for i, c in enumerate(classes or self.classes)}
        return np.array([index[label] for label in self.labels], dtype=np.int64)

    def subset(self, idx: list[int] | np.ndarray) -> SampleSet:
        idx = [int(i) for i in idx]
        return SampleSet(
            keys=[self.keys[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            paths=[self.paths[i] for i in idx],
            arrays=(self.arrays.take(idx) if hasattr(self.arrays, "take") else [self.arrays[i] for i in idx])
            if self.arrays is not None
            else None,
            synthetic=self.synthetic,
            description=self.description,
            notes=list(self.notes),
            content_id=self.content_id,
        )

    def fingerprint(self) -> str:
        """Identifies the content: keys, labels and (for files) size + mtime; for arrays, their bytes."""
        h = hashlib.sha256()
        if self.content_id is not None:
            h.update(f"{self.content_id}\0".encode())
            for key, label in zip(self.keys, self.labels):
                h.update(f"{key}\0{label}\0".encode())
            return h.hexdigest()[:16]
        for i, key in enumerate(self.keys):
            h.update(f"{key}\0{self.labels[i]}\0".encode())
            path = self.paths[i]
            if path is not None:
                try:
                    st = path.stat()
                    h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
                except OSError:
                    h.update(f"{path}\0missing\0".encode())
            elif self.arrays is not None and self.arrays[i] is not None:
                h.update(np.ascontiguousarray(self.arrays[i]).tobytes())
        return h.hexdigest()[:16]


DatasetFactory = Callable[..., SampleSet]
_KINDS: dict[str, DatasetFactory] = {}


def register_dataset(kind: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator: a function(**options, base_dir=Path) -> SampleSet for one dataset kind."""

    def deco(fn: DatasetFactory) -> DatasetFactory:
        _KINDS[kind] = fn
        return fn

    return deco


def list_dataset_kinds() -> list[str]:
    return sorted(_KINDS)


def dataset_option_names(kind: str) -> list[str] | None:
    """The options a dataset kind takes (None for an unknown kind or one that takes any option)."""
    import inspect

    if kind not in _KINDS:
        return None
    params = inspect.signature(_KINDS[kind]).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "base_dir"]


def load_samples(kind: str, options: dict[str, Any], base_dir: Path) -> SampleSet:
    if kind not in _KINDS:
        raise InputError(
            f"unknown dataset kind '{kind}'",
            field="data.kind",
            hint=did_you_mean(kind, _KINDS) or f"use one of {', '.join(sorted(_KINDS))}",
        )
    return _KINDS[kind](base_dir=base_dir, **options)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), stratified by class, deterministic in `seed` (scikit-learn's splitter).

    Every class keeps at least one training sample; a class with a single sample goes to training.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    counts = np.bincount(labels)
    singles = np.isin(labels, np.flatnonzero(counts == 1))
    rest = idx[~singles]
    if len(rest) == 0 or val_fraction <= 0:
        return idx, np.array([], dtype=np.int64)
    n_classes = len(np.unique(labels[rest]))
    n_val = max(int(round(val_fraction * len(rest))), n_classes)
    if n_val >= len(rest) - n_classes + 1:
        n_val = len(rest) - n_classes
    train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    train = np.sort(np.concatenate([train, idx[singles]]))
    return train, np.sort(val)


MIN_PER_CLASS = 3  # one image each for training, validation and test


def three_way_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, classes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, validation, test), stratified by class and deterministic in `seed`.

    Each class is shuffled on its own and split by the fractions (rounded, at least one image to each
    of validation and test, the rest to training), so every class is in every split. A class with fewer
    than three images cannot be: that is an input error naming the class, never a silent empty class.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(classes) if classes else 0)
    small = [(k, int(c)) for k, c in enumerate(counts) if 0 < c < MIN_PER_CLASS]
    if small:
        k, c = small[0]
        name = classes[k] if classes else str(k)
        more = f" (and {len(small) - 1} more classes)" if len(small) > 1 else ""
        raise InputError(
            f"class '{name}' has {c} image{'s' if c != 1 else ''}{more}: a class needs at least {MIN_PER_CLASS} "
            "to be in training, validation and test",
            field="train.data",
            hint="add images of that class, or remove the class from the data",
        )
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.flatnonzero(counts):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n = len(idx)
        n_test = min(max(1, round(test_fraction * n)), n - 2)
        n_val = min(max(1, round(val_fraction * n)), n - 1 - n_test)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    train, val, test = (np.sort(np.concatenate(p)) if p else np.array([], dtype=np.int64) for p in parts)
    return train, val, test
