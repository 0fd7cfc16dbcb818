"""Datasets: kinds (csv, imagefolder, digits, synthetic-artists; cifar10, stl10, cats-vs-dogs read locally,
and their synthetic stand-ins), split, decoded-image cache, loader."""

from bench.data import sources as _sources  # noqa: F401  (registers the kinds)
from bench.data import standard as _standard  # noqa: F401  (registers the standard datasets)
from bench.data.base import SampleSet, dataset_option_names, list_dataset_kinds, load_samples, register_dataset, stratified_split
from bench.data.images import decode_all
from bench.data.loader import CachedImages, make_loader

__all__ = [
    "CachedImages",
    "SampleSet",
    "dataset_option_names",
    "decode_all",
    "list_dataset_kinds",
    "load_samples",
    "make_loader",
    "register_dataset",
    "stratified_split",
]
