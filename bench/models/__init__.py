"""Models: the registry (names and metadata, no torch) and the builders (torch), kept apart as in timm.

`from bench.models import get_entry` reads the catalogue without importing torch; the builder functions
(`build_model`, `load_weights`, ...) are imported from bench.models.builders on first use, so that
validating a suite stays light.
"""

from typing import Any

from bench.models import catalog as _catalog  # noqa: F401  (fills the registry)
from bench.models.registry import ModelEntry, get_entry, is_model, list_families, list_models, register_model

_BUILDER_NAMES = (
    "build_model",
    "check_model_kwargs",
    "check_weights",
    "classifier_prefix",
    "load_weights",
    "register_source",
)

__all__ = ["ModelEntry", "get_entry", "is_model", "list_families", "list_models", "register_model", *_BUILDER_NAMES]


def __getattr__(name: str) -> Any:
    if name in _BUILDER_NAMES:
        from bench.models import builders  # deferred: builders import torch

        return getattr(builders, name)
    raise AttributeError(f"module 'bench.models' has no attribute {name!r}")
