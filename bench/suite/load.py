"""Reading a suite: YAML with line numbers, the profile merged in, `--set` overrides last, then validation.

Bad input raises `InputError` (exit code 2) naming the file, line and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.core.errors import InputError, did_you_mean
from bench.core.yamlfile import LineMap, line_of, load_yaml
from bench.suite.errors import translate_validation_error
from bench.suite.locations import dotted
from bench.suite.schema import ModelSpec, Suite, deep_merge


def _choose_profile(data: dict[str, Any], profile: str | None, file: str, lines: LineMap) -> str | None:
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise InputError(
            "must be a mapping of profile name -> overrides",
            file=file,
            line=line_of(lines, ("profiles",)),
            field="profiles",
        )
    where: tuple = ("profiles",)  # an unknown --profile points at the profiles; an unknown default at itself
    if profile is None:
        default = data.get("default_profile")
        where = ("default_profile",)
        if isinstance(default, dict):
            device_name = data.get("device", "auto")
            if device_name not in ("auto", "cpu", "cuda"):
                raise InputError(
                    f"unknown device {device_name!r}",
                    file=file,
                    line=line_of(lines, ("device",)),
                    field="device",
                    hint="use auto, cpu or cuda",
                )
            from bench.platform.device import resolve_device  # deferred: a per-device default profile must ask torch

            device = resolve_device(device_name).type
            default = default.get(device)
            where += (device,)
        profile = default
        if profile is None:
            return None
        if not isinstance(profile, str):
            raise InputError(
                f"a profile name is a string (got {profile!r})",
                file=file,
                line=line_of(lines, where),
                field=dotted(where),
                hint="e.g. default_profile: quick, or {cpu: quick, cuda: full}",
            )
    if profile not in profiles:
        names = sorted(profiles)
        hint = did_you_mean(profile, names) or (
            f"profiles here: {', '.join(names)}" if names else "this suite defines no profiles"
        )
        raise InputError(
            f"unknown profile '{profile}'",
            file=file,
            line=line_of(lines, where),
            field="profile" if where == ("profiles",) else dotted(where),
            hint=hint,
        )
    override = profiles[profile]
    if not isinstance(override, dict):
        raise InputError(
            "a profile is a mapping of fields to override",
            file=file,
            line=line_of(lines, ("profiles", profile)),
            field=f"profiles.{profile}",
        )
    for key in ("profiles", "default_profile"):
        if key in override:
            raise InputError(
                f"a profile cannot set '{key}'",
                file=file,
                line=line_of(lines, ("profiles", profile, key)),
                field=f"profiles.{profile}.{key}",
            )
    return profile


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["a.b=1", "c=[x, y]"]` -> {"a": {"b": 1}, "c": ["x", "y"]}; values are YAML (safe loader)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(
                f"--set expects KEY=VALUE, got '{item}'", field="--set", hint="e.g. --set settings.train.epochs=3"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise InputError(f"--set {key}: value is not valid YAML ({exc})", field="--set") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {key}: '{part}' is set twice", field="--set")
        node[parts[-1]] = value
    return out


def load_suite(path: str | Path, profile: str | None = None, overrides: list[str] | None = None) -> Suite:
    """Read, profile-merge and validate a suite file; `overrides` (KEY=VALUE, dotted keys) apply last.

    Bad input raises `InputError` (exit code 2)."""
    path = Path(path)
    data, lines = load_yaml(path)
    file = str(path)
    if data is None:
        raise InputError("the suite is empty", file=file, hint="see suites/smoke.yaml for a small example")
    if not isinstance(data, dict):
        raise InputError("a suite is a mapping (name:, models:, matrix:, ...)", file=file, line=1)
    chosen = _choose_profile(data, profile, file, lines)
    merged = {k: v for k, v in data.items()}
    if chosen is not None:
        merged = deep_merge({k: v for k, v in data.items() if k != "profiles"}, data["profiles"][chosen])
        merged["profiles"] = data["profiles"]
    if overrides:
        merged = deep_merge(merged, parse_overrides(overrides))
    try:
        suite = Suite.model_validate(merged)
    except ValidationError as exc:
        raise translate_validation_error(exc, file, lines, chosen, merged) from None
    suite._path = path
    suite._lines = lines
    suite._profile = chosen
    suite.check_names()
    suite.check_axes()
    for i, spec in enumerate(suite.models):
        if spec.weights is not None:
            weights = Path(spec.weights)
            if not weights.is_absolute():
                weights = suite.base_dir() / weights
            if not weights.is_file():
                raise suite.error(
                    f"weights file not found: {weights}",
                    field_path=("models", i, "weights"),
                    hint="give a local state-dict file, relative to the suite file",
                )
            _check_weights(suite, i, spec, weights)
    return suite


def _check_weights(suite: Suite, i: int, spec: ModelSpec, weights: Path) -> None:
    """A weights file is checked before the sweep: read safely (weights_only) and fitted to the model."""
    from bench.models.builders import check_weights  # deferred: reading a weights file needs torch

    first = suite.matrix.resolution[0]
    resolution = spec.resolution or (None if first == "native" else first)
    try:
        check_weights(  # a head of another class count is resized, so the default count will do here
            spec.name, weights, num_classes=suite.num_classes or 1000, resolution=resolution, **spec.kwargs
        )
    except InputError as exc:
        raise suite.error(f"{weights}: {exc.message}", field_path=("models", i, "weights"), hint=exc.hint) from None


def find_suite(name_or_path: str, search_dirs: list[Path]) -> Path:
    """A suite by path, or by name in the suite folders (`smoke` -> suites/smoke.yaml)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return path
    for folder in search_dirs:
        for ext in (".yaml", ".yml"):
            candidate = folder / f"{name_or_path}{ext}"
            if candidate.is_file():
                return candidate
    known = sorted({p.stem for d in search_dirs if d.is_dir() for p in d.glob("*.y*ml")})
    raise InputError(
        f"no suite '{name_or_path}'", hint=did_you_mean(name_or_path, known) or f"suites: {', '.join(known)}"
    )
