"""Datasets: kinds (csv, imagefolder, digits, synthetic-artists; cifar10, stl10, cats-vs-dogs read locally,
and their synthetic stand-ins), split, decoded-image cache, loader.

Importing this package registers the kinds and stays light (no torch): the decoded-image cache and the
loader (`decode_all`, `CachedImages`, `make_loader`) are imported on first use.
"""

from typing import Any

from bench.data import sources as _sources  # noqa: F401  (registers the kinds)
from bench.data import standard as _standard  # noqa: F401  (registers the standard datasets)
from bench.data.base import (
    SampleSet,
    dataset_option_names,
    list_dataset_kinds,
    load_samples,
    register_dataset,
    stratified_split,
)

_TORCH_NAMES = {
    "decode_all": "bench.data.images",
    "CachedImages": "bench.data.loader",
    "make_loader": "bench.data.loader",
}

__all__ = [
    "SampleSet",
    "dataset_option_names",
    "list_dataset_kinds",
    "load_samples",
    "register_dataset",
    "stratified_split",
    *_TORCH_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)  # deferred: these import torch
    raise AttributeError(f"module 'bench.data' has no attribute {name!r}")
