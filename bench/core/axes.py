"""Any field of a cell's config as a matrix axis, named by a dotted path.

The built-in axes (`precision`, `batch_size`, `resolution`, ...) are fields of a cell. A *dotted path*
names any other field:

- `<measurement>.<field>[.<field>...]` sets one of a measurement's settings, exactly as
  `settings.<measurement>.<field>` would: `train.optimizer`, `train.lr`, `train.epochs`,
  `train.freeze_backbone`, `train.data.options.scale`, `speed.min_time_s`;
- `model.<kwarg>` sets a keyword argument of the model's builder (as a model's `kwargs:` would):
  `model.drop_rate`, `model.stochastic_depth_prob`, `model.filters`.

A leading `settings.` is accepted and dropped (`settings.train.lr` is `train.lr`). The value of an axis
lands where that field lives (a cell's `settings` or `model_kwargs`), so it reaches the measurement like
any other setting, and a cell's id (the hash of its config) changes only for suites that use the axis.
Paths are checked against the settings' schema, with a suggestion for a misspelled part; values are
validated like every other field.
"""

from __future__ import annotations

import copy
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from bench.core.errors import did_you_mean

MODEL_PREFIX = "model"
BUILTIN_AXES = ("precision", "batch_size", "resolution", "channels_last", "compile", "seed", "strategy", "backend")


def normalise(path: str) -> str:
    """`settings.train.lr` -> `train.lr`; other paths as they are."""
    return path.removeprefix("settings.") if path.startswith("settings.") else path


def is_dotted(name: Any) -> bool:
    return isinstance(name, str) and "." in name


def flatten(key: str, value: Any) -> dict[str, Any]:
    """A nested mapping under a matrix key -> dotted keys: {train: {lr: [..]}} -> {"train.lr": [..]}."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for sub, sub_value in value.items():
            out.update(flatten(f"{key}.{sub}", sub_value))
        return out
    return {key: value}


def parts(path: str) -> list[str]:
    return normalise(path).split(".")


def override(path: str, value: Any) -> dict[str, Any]:
    """The nested mapping that sets `path` below its head: `train.data.subset` -> {"data": {"subset": value}}."""
    node: Any = copy.deepcopy(value)
    for part in reversed(parts(path)[1:]):
        node = {part: node}
    return node


def head(path: str) -> str:
    """The measurement name, or `model`."""
    return parts(path)[0]


def value_of(cell: Any, axis: str) -> Any:
    """The value a cell has for an axis: a built-in field, a model keyword, or a measurement setting
    (None when the cell does not set it)."""
    if not is_dotted(axis):
        return getattr(cell, axis, None)
    first, *rest = parts(axis)
    node: Any = cell.model_kwargs if first == MODEL_PREFIX else cell.settings.get(first)
    for part in rest:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def without(identity: dict[str, Any], axis: str) -> dict[str, Any]:
    """A cell identity with one axis removed (for grouping cells that differ only on it)."""
    identity = copy.deepcopy(identity)
    if not is_dotted(axis):
        identity.pop(axis, None)
        return identity
    first, *rest = parts(axis)
    node = identity.get("model_kwargs") if first == MODEL_PREFIX else identity.get("settings", {}).get(first)
    for part in rest[:-1]:
        if not isinstance(node, dict):
            return identity
        node = node.get(part)
    if isinstance(node, dict):
        node.pop(rest[-1], None)
    return identity


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not None and len(args) == 1 and not isinstance(annotation, type):
        return args[0]
    return annotation


def check_settings_path(
    settings_model: type[BaseModel], rest: list[str], prefix: str
) -> tuple[str | None, str | None, str | None]:
    """Walk `rest` down a Settings model. Returns (problem, hint, free_key_parent): a problem when a
    part is unknown (with a suggestion), or the name of the free-form mapping the path ends in (e.g.
    `options`), whose keys the caller checks. A path may end at a group of settings (`train.early_stopping`:
    each value is then a whole mapping, or null where the group is optional)."""
    model: Any = settings_model
    walked: list[str] = []
    for i, part in enumerate(rest):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            if get_origin(model) is dict or model is dict:
                return None, None, ".".join(walked)
            return f"'{'.'.join([prefix, *walked])}' is a single value, it has no field '{part}'", None, None
        fields = list(model.model_fields)
        if part not in fields:
            where = f"settings.{'.'.join([prefix, *walked])}"
            hint = did_you_mean(part, fields) or f"fields of {where}: {', '.join(fields)}"
            return f"unknown field '{part}' in {where}", hint, None
        walked.append(part)
        model = _unwrap(model.model_fields[part].annotation)
    if not rest:
        return "a dotted axis names a field below the measurement", None, None
    return None, None, None
