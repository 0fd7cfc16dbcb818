"""Pydantic's validation errors, translated into bench's: one `file:line: field: message — hint` each.

The hint suggests the closest valid name for an unknown key, precision or executor.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from bench.core.errors import InputError, did_you_mean
from bench.core.precision import PRECISIONS
from bench.core.yamlfile import LineMap
from bench.suite.locations import dotted, line_for
from bench.suite.schema import EXECUTORS, Matrix, ModelSpec, RayOptions, Suite


def translate_validation_error(
    exc: ValidationError, file: str, lines: LineMap, profile: str | None, data: dict
) -> InputError:
    errors: list[InputError] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        etype = err["type"]
        hint = None
        if etype == "extra_forbidden":
            parent = _resolve_model_at(loc[:-1])
            allowed = [f for f in parent.model_fields if not (parent is Matrix and f == "paths")] if parent else []
            msg = f"unknown key '{loc[-1]}'"
            hint = did_you_mean(str(loc[-1]), allowed) or (f"allowed: {', '.join(allowed)}" if allowed else None)
        elif etype == "too_short" and loc and loc[0] == "matrix":
            msg = "empty axis: give at least one value (or remove the axis to use its default)"
        elif etype == "literal_error" and loc[:1] == ("matrix",) and "precision" in loc:
            value = err.get("input")
            msg = f"unknown precision '{value}'"
            hint = did_you_mean(str(value), PRECISIONS) or f"use one of {', '.join(PRECISIONS)}"
        elif etype == "literal_error" and loc == ("executor",):
            value = err.get("input")
            msg = f"unknown executor '{value}'"
            hint = did_you_mean(str(value), EXECUTORS) or f"use one of {', '.join(EXECUTORS)}"
        elif etype == "string_pattern_mismatch" and loc == ("name",):
            msg = f"not a usable suite name (got {err.get('input')!r})"
            hint = "use letters, digits, '_', '.' and '-' (it names the results folder)"
        elif loc[:2] == ("matrix", "resolution") or (len(loc) == 3 and loc[0] == "models" and loc[2] == "resolution"):
            msg = f"resolution must be a positive whole number of pixels (got {err.get('input')!r})"
            hint = "e.g. 224, or native for the model's own" if loc[0] == "matrix" else "e.g. 224"
        elif etype == "missing":
            msg = "required field is missing"
        elif "input" in err and etype not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {err['input']!r})"
        # Literal unions on 'resolution' report one error per branch: keep the first per location.
        if any(e.field == dotted(loc[:3] if loc[:1] == ("matrix",) else loc) for e in errors) and loc[:1] == (
            "matrix",
        ):
            continue
        field_loc = loc[:3] if loc[:1] == ("matrix",) else loc
        field_loc = tuple(
            p for p in field_loc if not (isinstance(p, str) and ("[" in p or p in ("int", "str", "literal")))
        )
        errors.append(
            InputError(msg, file=file, line=line_for(lines, field_loc, profile), field=dotted(field_loc), hint=hint)
        )
    return InputError.many(errors)


def _resolve_model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class at a location of the suite, for 'unknown key' suggestions."""
    model: type[BaseModel] | None = Suite
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if model is Suite and part == "models":
            model = ModelSpec
        elif model is Suite and part == "matrix":
            model = Matrix
        elif model is Suite and part == "ray":
            model = RayOptions
        else:
            return None
    return model
