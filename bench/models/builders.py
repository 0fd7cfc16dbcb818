"""Building models and loading their weights: the code half of the model registry (bench.models.registry
holds the names and metadata, as timm keeps `_registry` apart from `_builder`).

How a model is built is decided by its *source*: each source has one builder registered with
`@register_source` (`torchvision`, `timm`, and `bench` for bench's own small models). Nothing here
downloads: models are built with random init, or loaded from a local weights file the suite names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.core.errors import InputError, did_you_mean
from bench.models.registry import get_entry
from bench.models.small_cnn import BENCH_MODELS

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_source(source: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: the function that builds every model of one source library."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[source] = fn
        return fn

    return deco


@register_source("torchvision")
def _build_torchvision(upstream: str, num_classes: int, **kwargs: Any) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(upstream, weights=None, num_classes=num_classes, **kwargs)


@register_source("timm")
def _build_timm(upstream: str, num_classes: int, **kwargs: Any) -> nn.Module:
    import timm

    return timm.create_model(upstream, pretrained=False, num_classes=num_classes, **kwargs)


@register_source("bench")
def _build_bench(upstream: str, num_classes: int, **kwargs: Any) -> nn.Module:
    cls, _ = BENCH_MODELS[upstream]
    return cls(num_classes=num_classes, **kwargs)


def _kwarg_names(fn: Any) -> tuple[list[str], bool]:
    """(named parameters, takes **kwargs) of a callable."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return [], True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def model_kwarg_names(name: str) -> list[str] | None:
    """The keyword arguments a model's builder accepts (None when it cannot be told: it takes **kwargs
    all the way down). Read from bench's own config schemas, or from the signatures of the builder and
    of the class it builds (built once on the meta device: no memory, no init)."""
    entry = get_entry(name)
    if entry.source == "bench":
        return [n for n in BENCH_MODELS[entry.upstream][1].model_fields] + ["img_size"]
    if entry.source == "torchvision":
        import torchvision

        builder = torchvision.models.get_model_builder(entry.upstream)
    else:
        import timm

        try:
            builder = timm.models.model_entrypoint(entry.upstream)
        except Exception:  # noqa: BLE001
            builder = None
    try:
        with torch.device("meta"):
            model = _BUILDERS[entry.source](entry.upstream, 10, **entry.kwargs)
    except Exception:  # noqa: BLE001 - cannot tell; the cell will say
        return None
    names, open_ended = _kwarg_names(type(model).__init__)
    if open_ended:
        return None
    if builder is not None:
        more, _ = _kwarg_names(builder)
        names += [n for n in more if n not in ("weights", "progress", "pretrained")]
    return sorted(set(names) - {"num_classes"})


def _meta_model(name: str, num_classes: int, resolution: int | None, kwargs: dict[str, Any]) -> nn.Module:
    """The model built on the meta device (shapes only: no memory, no init cost), for the checks before a sweep."""
    entry = get_entry(name)
    merged = {**entry.kwargs, **kwargs}
    if entry.resolution_arg and resolution is not None:
        merged.setdefault(entry.resolution_arg, resolution)
    with torch.device("meta"):
        return _BUILDERS[entry.source](entry.upstream, num_classes, **merged)


def check_model_kwargs(name: str, kwargs: dict[str, Any], *, num_classes: int, resolution: int | None = None) -> None:
    """Before a sweep: every keyword is one the model takes (a suggestion otherwise), and the model builds
    with them (on the meta device). An InputError says what is wrong; `field` is "name" for an unknown
    keyword, "value" for a value the builder refuses."""
    names = model_kwarg_names(name)
    if names is not None:
        for key in kwargs:
            if key not in names:
                raise InputError(
                    f"no keyword argument '{key}'",
                    field="name",
                    hint=did_you_mean(key, names) or f"its keyword arguments: {', '.join(names)}",
                )
    try:
        _meta_model(name, num_classes, resolution, kwargs)
    except InputError as exc:
        if exc.field == "resolution":  # depends on the cell's resolution: checked when the cell is built
            return
        raise InputError(exc.message, field="value", hint=exc.hint) from None
    except Exception as exc:  # noqa: BLE001 - the builder's own complaint, shown as is
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if hasattr(exc, "errors"):  # pydantic: the first problem, readably
            err = exc.errors()[0]
            text = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        raise InputError(
            f"cannot be built with {kwargs} ({text})", field="value", hint="use a value the builder accepts"
        ) from None


def build_model(
    name: str,
    *,
    num_classes: int = 1000,
    resolution: int | None = None,
    weights: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build `name` with random init (or a local weights file), in eval mode, on the CPU.

    `resolution` matters only to models whose shape depends on it (see `ModelEntry.resolution_arg`).
    """
    entry = get_entry(name)
    kwargs = {**entry.kwargs, **kwargs}
    if entry.resolution_arg and resolution is not None:
        kwargs.setdefault(entry.resolution_arg, resolution)
    model = _BUILDERS[entry.source](entry.upstream, num_classes, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def classifier_prefix(model: nn.Module) -> str | None:
    """The module path of the final classification layer (the last Linear), e.g. 'fc' or 'heads.head'."""
    last = None
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = mod_name
    return last


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "model_state"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            "weights file holds no state dict", file=path, hint="save it with torch.save(model.state_dict(), path)"
        )
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A local state dict, read with `weights_only=True`: a pickle that would run code is refused, not run."""
    path = Path(path)
    if not path.is_file():
        raise InputError("weights file not found", file=path, hint="give the path of a local .pth/.pt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or corrupt file
        text = str(exc)
        if "Weights only load failed" in text:  # torch's long message: keep the line that says what was refused
            after = (
                text.split("WeightsUnpickler error:", 1)[1]
                if "WeightsUnpickler error:" in text
                else text.split("\n", 1)[-1]
            )
            lines = [
                ln.strip()
                for ln in after.splitlines()
                if ln.strip() and not ln.startswith(("Check the documentation", "Please file"))
            ]
            detail = (lines[0] if lines else "unsupported content")[:200]
            message = f"refused to load weights: not plain tensors ({detail})"
        else:
            first = text.strip().splitlines()[0][:200] if text.strip() else "no detail"
            message = f"cannot read weights ({type(exc).__name__}: {first})"
        raise InputError(
            message,
            file=path,
            hint="bench loads weights with weights_only=True (no code in a file runs); "
            "save a plain state_dict with torch.save(model.state_dict(), path)",
        ) from None
    return _unwrap_state_dict(obj, path)


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> list[str]:
    """The classifier keys whose shape differs (the head is resized); an InputError when any other key is
    missing, unexpected or of another shape: the file was saved from another architecture."""
    own = model.state_dict()
    head = classifier_prefix(model)
    head_keys = {k for k in own if head and k.startswith(head + ".")}
    resized = sorted(k for k in state if k in own and state[k].shape != own[k].shape and k in head_keys)
    wrong_shape = sorted(k for k in state if k in own and state[k].shape != own[k].shape and k not in head_keys)
    missing = sorted(k for k in own if k not in state and k not in head_keys)
    unexpected = sorted(k for k in state if k not in own)
    if wrong_shape or missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            detail.append(f"{len(wrong_shape)} of another shape (e.g. {wrong_shape[0]})")
        raise InputError(
            "weights do not fit this architecture: " + "; ".join(detail),
            file=path,
            hint="check that the file was saved from the same model",
        )
    return resized


def check_weights(
    name: str, path: str | Path, *, num_classes: int, resolution: int | None = None, **kwargs: Any
) -> None:
    """Before a sweep: is `path` a safe state dict that fits `name`? The model is built on the meta device
    (shapes only, no memory, no init cost). A model that cannot be built there is checked when its cell runs."""
    state = read_state_dict(path)
    try:
        model = _meta_model(name, num_classes, resolution, kwargs)
    except Exception:  # noqa: BLE001 - bad kwargs etc. fail the cell itself, with their own message
        return
    check_state_dict(model, state, path)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a local state dict with `weights_only=True` (a pickle cannot run code).

    When the class count differs, the classifier keys are left at their fresh init ("head resized");
    any other missing, unexpected or mis-shaped key means the file is for another architecture: an error.
    Returns what was done, for the record.
    """
    path = Path(path)
    state = read_state_dict(path)
    resized = check_state_dict(model, state, path)
    for key in resized:
        del state[key]
    model.load_state_dict(state, strict=False)
    return {"weights": str(path), "head_resized": bool(resized)}
