"""The model registry: names -> metadata (data) and builders (code), kept apart as in timm.

This module is the data half and imports no torch (validating a suite reads it); bench.models.builders
is the code half. A registry entry is plain data (family, source library, upstream name, native resolution). How a model is
built is decided by its *source*: each source has one builder registered with `@register_source`
(`torchvision`, `timm`, and `bench` for bench's own small models, e.g. `small_cnn`). Names
outside the catalogue are reachable by prefix, `timm:NAME` or `torchvision:NAME`. Nothing here downloads:
models are built with random init, or loaded from a local weights file the suite names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import InputError, did_you_mean

SOURCES = ("torchvision", "timm", "bench")


@dataclass(frozen=True)
class ModelEntry:
    """What bench knows about a model before building it."""

    name: str
    family: str
    source: str
    upstream: str
    native_resolution: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    # The builder argument that sets the input size, for models whose shape depends on it (ViTs: the
    # position embedding). None: the model takes any resolution as is.
    resolution_arg: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What a listing shows: the entry's data, less how it is built (kwargs, the resolution argument)."""
        return {name: getattr(self, name) for name in ("name", "family", "source", "upstream", "native_resolution")}


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    family: str,
    source: str,
    native_resolution: int,
    upstream: str | None = None,
    resolution_arg: str | None = None,
    **kwargs: Any,
) -> ModelEntry:
    """Add one catalogue entry; names are unique."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if name in _MODELS:
        raise ValueError(f"model {name!r} registered twice")
    entry = ModelEntry(name, family, source, upstream or name, native_resolution, dict(kwargs), resolution_arg)
    _MODELS[name] = entry
    return entry


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (sorted), optionally of one family."""
    return sorted(n for n, e in _MODELS.items() if family is None or e.family == family)


def list_families() -> list[str]:
    return sorted({e.family for e in _MODELS.values()})


def _prefixed_entry(name: str) -> ModelEntry | None:
    source, _, upstream = name.partition(":")
    if source == "timm":
        import timm

        if not timm.is_model(upstream):
            return None
        cfg = timm.get_pretrained_cfg(upstream, allow_unregistered=True)
        size = getattr(cfg, "input_size", None) if cfg is not None else None
        res = int(size[-1]) if size else 224
        return ModelEntry(name, f"timm:{upstream.split('_')[0]}", "timm", upstream, res)
    if source == "torchvision":
        import torchvision

        if upstream not in torchvision.models.list_models(module=torchvision.models):
            return None
        res = 224
        try:
            default = torchvision.models.get_model_weights(upstream).DEFAULT
            res = int(default.transforms().crop_size[0])
        except Exception:  # some builders have no weights enum; 224 is torchvision's usual size
            pass
        return ModelEntry(name, f"torchvision:{upstream.split('_')[0]}", "torchvision", upstream, res)
    return None


def is_model(name: str) -> bool:
    """True for a catalogue name or a valid `timm:`/`torchvision:` name."""
    if name in _MODELS:
        return True
    if ":" in name:
        return _prefixed_entry(name) is not None
    return False


def get_entry(name: str) -> ModelEntry:
    """The entry for `name`; an InputError with a suggestion when it is unknown."""
    if name in _MODELS:
        return _MODELS[name]
    if ":" in name:
        source = name.partition(":")[0]
        if source not in SOURCES:
            raise InputError(
                f"unknown model source '{source}'",
                hint=f"use one of {', '.join(s + ':NAME' for s in SOURCES)}",
            )
        entry = _prefixed_entry(name)
        if entry is not None:
            return entry
        raise InputError(f"unknown model '{name}'", hint=f"'{source}' has no model of that name")
    hint = (
        did_you_mean(name, list(_MODELS))
        or "`bench list models` shows the names; any timm or torchvision model works as timm:NAME / torchvision:NAME"
    )
    raise InputError(f"unknown model '{name}'", hint=hint)
