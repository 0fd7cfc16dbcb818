"""Model registry and catalogue; see `registry` for the API."""

from bench.models import catalog as _catalog  # noqa: F401  (fills the registry)
from bench.models.registry import (
    ModelEntry,
    build_model,
    classifier_prefix,
    get_entry,
    is_model,
    list_families,
    list_models,
    load_weights,
    register_model,
)

__all__ = [
    "ModelEntry",
    "build_model",
    "classifier_prefix",
    "get_entry",
    "is_model",
    "list_families",
    "list_models",
    "load_weights",
    "register_model",
]
