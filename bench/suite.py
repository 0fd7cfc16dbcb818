"""The suite schema: what a person writes in YAML, validated into a `Suite`.

A suite names models, a `matrix` of axes that multiply, `include`/`exclude` rules, the measurements to
take per cell and their settings, and named `profiles` that override any field (`quick` for a CPU,
`full` for a GPU). Every error names the file, the line and the field, and suggests the closest valid
name; see `load_suite`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from bench import axes as axis_paths
from bench.device import PRECISIONS, resolve_device
from bench.errors import InputError, did_you_mean
from bench.measure import get_measurement, list_measurements
from bench.models import get_entry, list_families
from bench.strategies import BUILTIN_STRATEGIES, Strategy
from bench.yamlio import LineMap, line_of, load_yaml

Precision = Literal["fp32", "bf16", "fp16"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(StrictModel):
    """A model, with optional per-model overrides (these win over the matrix)."""

    name: str
    resolution: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    weights: str | None = Field(None, description="local state-dict file, relative to the suite file")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments of the builder")
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-measurement settings for this model, merged over the suite's"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        try:
            get_entry(name)
        except InputError as exc:
            raise ValueError(exc.message + (f" — {exc.hint}" if exc.hint else "")) from None
        return name


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class Matrix(StrictModel):
    """Axes that multiply: every combination (per model) is one cell.

    Besides the built-in axes below, any field of a cell's config is an axis by its dotted path
    (`train.optimizer: [adam, adamw]`, `model.drop_rate: [0.0, 0.2]`; see `bench.axes`); those are kept
    in `paths`, in the order written, and checked against the settings' schema by `Suite.check_axes`.
    """

    precision: list[Precision] = Field(default_factory=lambda: ["fp32"], min_length=1)
    batch_size: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    resolution: list[PositiveInt | Literal["native"]] = Field(default_factory=lambda: ["native"], min_length=1)
    channels_last: list[StrictBool] = Field(default_factory=lambda: [False], min_length=1)
    compile: list[StrictBool] = Field(default_factory=lambda: [False], min_length=1)
    seed: list[NonNegativeInt] = Field(default_factory=lambda: [0], min_length=1)
    strategy: list[str] = Field(default_factory=lambda: ["none"], min_length=1, description="sampling/loss recipes (train)")
    paths: dict[str, list[Any]] = Field(default_factory=dict, exclude=True, description="dotted-path axes (any config field)")

    @model_validator(mode="before")
    @classmethod
    def _dotted_axes(cls, data: Any) -> Any:
        """Dotted keys (and nested mappings, as `--set matrix.train.lr=[..]` writes them) -> `paths`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        paths: dict[str, Any] = {}
        for key in list(data):
            if not isinstance(key, str) or key == "paths" or (key in cls.model_fields and not isinstance(data[key], dict)):
                continue
            if axis_paths.is_dotted(key) or isinstance(data[key], dict):
                for path, values in axis_paths.flatten(key, data.pop(key)).items():
                    paths[axis_paths.normalise(path)] = values
        for path, values in paths.items():
            if not axis_paths.is_dotted(path):  # {precision: {}} and the like: not a path
                data[path] = values
                continue
            data.setdefault("paths", {})[path] = values
        return data

    @field_validator(*axis_paths.BUILTIN_AXES, mode="before")
    @classmethod
    def _scalar_to_list(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("paths", mode="before")
    @classmethod
    def _path_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _as_list(v) for k, v in value.items()}
        return value

    @classmethod
    def axes(cls) -> list[str]:
        """The built-in axes (dotted-path axes are per suite: `Matrix.paths`)."""
        return [name for name in cls.model_fields if name != "paths"]

    def all_axes(self) -> dict[str, list[Any]]:
        """Every axis of this matrix with its values: the built-in ones, then the dotted paths."""
        return {**{name: list(getattr(self, name)) for name in self.axes()}, **self.paths}


RULE_KEYS = ("model", "family")


def _check_rule(rule: dict[str, Any], *, include: bool = False) -> dict[str, Any]:
    """A rule maps `model`/`family`/axis names to a value or a list of values. An include rule may
    also carry `settings` (per-measurement overrides for the cells it adds)."""
    if not isinstance(rule, dict) or not rule:
        raise ValueError("a rule is a non-empty mapping, e.g. {model: vgg16, precision: fp16}")
    allowed = list(RULE_KEYS) + Matrix.axes() + (["settings"] if include else [])
    rule = dict(rule)
    settings = rule.pop("settings", None) if include else None
    if settings is not None:
        if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
            raise ValueError("an include rule's settings map a measurement name to its settings")
        for name, values in settings.items():
            if name not in list_measurements():
                hint = did_you_mean(name, list_measurements()) or f"use {', '.join(list_measurements())}"
                raise ValueError(f"settings for unknown measurement '{name}' — {hint}")
    for key, value in rule.items():
        if axis_paths.is_dotted(key):  # a dotted-path axis: its path and values are checked by Suite.check_axes
            if not _as_list(value):
                raise ValueError(f"'{key}' has an empty list")
            continue
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"use one of {', '.join(allowed)}"
            raise ValueError(f"unknown key '{key}' in rule — {hint}")
        values = _as_list(value)
        if not values:
            raise ValueError(f"'{key}' has an empty list")
        if key == "model":
            for name in values:
                ModelSpec(name=name)
        elif key == "family":
            for fam in values:
                if fam not in list_families():
                    hint = did_you_mean(fam, list_families()) or f"families: {', '.join(list_families())}"
                    raise ValueError(f"unknown family '{fam}' — {hint}")
        else:
            Matrix.model_validate({key: values})
    checked = {axis_paths.normalise(k) if axis_paths.is_dotted(k) else k: _as_list(v) for k, v in rule.items()}
    if settings is not None:
        checked["settings"] = settings
    return checked


class RayOptions(StrictModel):
    """How `executor: ray` runs cells (bench.executors.RayExecutor)."""

    address: str | None = Field(None, description="the cluster: 'auto' (this node's), 'ray://HOST:10001'; none: a local cluster for the run")
    num_cpus_per_cell: PositiveFloat = Field(1, description="CPUs Ray reserves for each cell's task")
    num_gpus_per_cell: NonNegativeFloat | None = Field(None, description="GPUs per cell (default: 1 when the device is cuda, else 0)")
    max_retries: NonNegativeInt = Field(3, description="times a cell is run again when its worker is lost (killed, out of memory, node gone)")
    torch_threads: PositiveInt | None = Field(None, description="torch threads in each task (default: num_cpus_per_cell, at least 1)")


class Suite(StrictModel):
    """A validated suite, with the profile (if any) already applied."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="used as the results folder name")
    description: str = ""
    models: list[ModelSpec] = Field(min_length=1)
    matrix: Matrix = Field(default_factory=Matrix)
    include: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    measure: list[str] = Field(default_factory=lambda: ["profile", "speed"], min_length=1)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-measurement settings")
    num_classes: PositiveInt = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    isolation: Literal["auto", "process", "none"] = Field(
        "auto", description="run cells in a fresh child process: auto (cells that measure speed), process (all), none")
    memory_limit_mb: PositiveInt | None = Field(
        None, description="cap each child process's address space at its size after start-up + this (process isolation only; "
                          "a CPU option: CUDA reserves far more address space than it uses)")
    executor: Literal["local", "ray"] = Field(
        "local", description="where cells run: local (this machine, one after the other) or ray (tasks on a Ray cluster); not part of a cell's id")
    ray: RayOptions = Field(default_factory=RayOptions, description="options of executor: ray")
    cudnn_benchmark: StrictBool | None = Field(
        None, description="torch.backends.cudnn.benchmark in every cell (cuDNN autotunes convolutions for the shapes it meets; "
                          "timm's benchmark.py turns it on); unset: PyTorch's default (off), and the cell ids stay as they were")
    threads: PositiveInt | None = Field(
        None, description="torch threads for the run (recorded in env.json, not part of cell ids); None: torch's default")
    strategies: dict[str, Strategy] = Field(default_factory=dict, description="named strategies beside the built-in ones")
    regression: dict[str, str | float] = Field(default_factory=dict, description="per-metric thresholds for `bench compare`: '10%', '0.01', 'exact'")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_profile: str | dict[Literal["cpu", "cuda"], str] | None = None

    _path: Path | None = PrivateAttr(None)
    _lines: LineMap = PrivateAttr(default_factory=dict)
    _profile: str | None = PrivateAttr(None)

    @field_validator("models", mode="before")
    @classmethod
    def _names_to_specs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _rules_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("include")
    @classmethod
    def _include_rules(cls, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [_check_rule(rule, include=True) for rule in rules]

    @field_validator("exclude")
    @classmethod
    def _exclude_rules(cls, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [_check_rule(rule) for rule in rules]

    @field_validator("regression")
    @classmethod
    def _regression_thresholds(cls, value: dict[str, Any]) -> dict[str, Any]:
        from bench.regression import thresholds_from

        try:
            thresholds_from(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("measure", mode="before")
    @classmethod
    def _measure_list(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("measure")
    @classmethod
    def _known_measurements(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in list_measurements():
                hint = did_you_mean(name, list_measurements()) or f"use {', '.join(list_measurements())}"
                raise ValueError(f"unknown measurement '{name}' — {hint}")
        if len(set(names)) != len(names):
            raise ValueError("a measurement is listed twice")
        return names

    @model_validator(mode="after")
    def _settings_valid(self) -> "Suite":
        for name, values in self.settings.items():
            if name not in list_measurements():
                hint = did_you_mean(name, list_measurements()) or f"use {', '.join(list_measurements())}"
                raise ValueError(f"settings for unknown measurement '{name}' — {hint}")
            get_measurement(name).Settings.model_validate(values or {})
        for spec in self.models:
            for name, values in spec.settings.items():
                if name not in list_measurements():
                    hint = did_you_mean(name, list_measurements()) or f"use {', '.join(list_measurements())}"
                    raise ValueError(f"settings for unknown measurement '{name}' in model '{spec.name}' — {hint}")
                get_measurement(name).Settings.model_validate(deep_merge(self.settings.get(name) or {}, values or {}))
        for rule in self.include:
            for name, values in (rule.get("settings") or {}).items():
                get_measurement(name).Settings.model_validate(deep_merge(self.settings.get(name) or {}, values))
        return self

    def check_names(self) -> None:
        """Checks that name a field (line and all), run by `load_suite` after validation: strategies are
        known, and no model is listed twice with the same settings."""
        known = {**BUILTIN_STRATEGIES, **self.strategies}
        places = [(("matrix", "strategy", i), v) for i, v in enumerate(self.matrix.strategy)]
        for kind in ("include", "exclude"):
            places += [((kind, j, "strategy"), v) for j, r in enumerate(getattr(self, kind)) for v in r.get("strategy", [])]
        for where, name in places:
            if name not in known:
                hint = did_you_mean(name, list(known)) or f"use one of {', '.join(known)} or define it under strategies:"
                raise self.error(f"unknown strategy '{name}'", field_path=where, hint=hint)
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.models):
            if spec.name in seen and not _differs([self.models[seen[spec.name]], spec], spec.name):
                raise self.error(f"model '{spec.name}' is listed twice with the same settings (first as models[{seen[spec.name]}])",
                                 field_path=("models", i), hint="remove one, or give them different settings")
            seen.setdefault(spec.name, i)

    def check_axes(self) -> None:
        """Dotted-path axes (in the matrix and in include/exclude rules), run by `load_suite` after
        validation: each path names a real field (a suggestion when a part is misspelled), and each value
        is valid there, checked by the same schema as the field itself."""
        places: list[tuple[tuple, str, list[Any]]] = [(("matrix", path), path, values) for path, values in self.matrix.paths.items()]
        for kind in ("include", "exclude"):
            for j, rule in enumerate(getattr(self, kind)):
                places += [((kind, j, key), key, values) for key, values in rule.items() if axis_paths.is_dotted(key)]
        for where, path, values in places:
            self._check_axis(path, values, where)

    def _check_axis(self, path: str, values: list[Any], where: tuple) -> None:
        if not values:
            raise self.error("empty axis: give at least one value (or remove the axis)", field_path=where)
        first, *rest = axis_paths.parts(path)
        if first == axis_paths.MODEL_PREFIX:
            self._check_model_axis(path, rest, values, where)
            return
        measurements = list_measurements()
        if first not in measurements:
            known = measurements + [axis_paths.MODEL_PREFIX]
            hint = did_you_mean(first, known + list(axis_paths.BUILTIN_AXES))
            hint = f"{hint} ({first!r} is not a measurement or 'model')" if hint else (
                f"start it with a measurement ({', '.join(measurements)}) or 'model' (a model keyword argument), e.g. train.optimizer")
            raise self.error(f"unknown axis '{path}'", field_path=where, hint=hint)
        if first not in self.measure:
            raise self.error(f"axis '{path}' sets a '{first}' setting, but the suite does not measure '{first}'",
                             field_path=where, hint=f"add {first} to measure:, or remove the axis")
        settings_model = get_measurement(first).Settings
        problem, hint, free = axis_paths.check_settings_path(settings_model, rest, first)
        if problem:
            raise self.error(f"axis '{path}': {problem}", field_path=where, hint=hint)
        if first == "train" and free == "data.options" and len(rest) >= 3:
            self._check_dataset_option(path, rest[2], where)
        for i, value in enumerate(values):
            merged = deep_merge(self.settings.get(first) or {}, axis_paths.override(path, value))
            try:
                settings_model.model_validate(merged)
            except ValidationError as exc:
                err = exc.errors()[0]
                msg = err["msg"].removeprefix("Value error, ")
                raise self.error(f"{msg} (got {value!r})", field_path=where + (i,),
                                 hint=f"a value for {'.'.join(rest)}, as under settings.{first}") from None

    def _check_dataset_option(self, path: str, option: str, where: tuple) -> None:
        from bench.data import dataset_option_names

        kind = (self.settings.get("train") or {}).get("data", {}).get("kind", "synthetic-artists")
        names = dataset_option_names(kind) if isinstance(kind, str) else None
        if names is not None and option not in names:
            hint = did_you_mean(option, names) or f"options of '{kind}': {', '.join(names)}"
            raise self.error(f"axis '{path}': dataset kind '{kind}' has no option '{option}'", field_path=where, hint=hint)

    def _check_model_axis(self, path: str, rest: list[str], values: list[Any], where: tuple) -> None:
        from bench.models.registry import check_model_kwargs

        if len(rest) != 1:
            raise self.error(f"axis '{path}': name one keyword argument of the model builder, e.g. model.drop_rate",
                             field_path=where)
        rule = getattr(self, where[0])[where[1]] if where[0] in ("include", "exclude") else {}
        specs = [spec for spec in self.models if spec.name in rule.get("model", [spec.name])
                 and get_entry(spec.name).family in rule.get("family", [get_entry(spec.name).family])]
        specs += [ModelSpec(name=n) for n in rule.get("model", []) if n not in {s.name for s in self.models}]
        for spec in specs:
            for i, value in enumerate(values):
                try:
                    check_model_kwargs(spec.name, {**spec.kwargs, rest[0]: value}, num_classes=self.num_classes)
                except InputError as exc:
                    raise self.error(f"model '{spec.name}': {exc.message}", field_path=where if exc.field == "name" else where + (i,),
                                     hint=exc.hint) from None

    # -- where things came from, for errors raised after validation --------------------------------
    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def profile(self) -> str | None:
        return self._profile

    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    def error(self, message: str, *, field_path: tuple = (), hint: str | None = None) -> InputError:
        """An InputError pointing at `field_path` in the suite file."""
        return InputError(
            message,
            file=self._path,
            line=_line_for(self._lines, field_path, self._profile),
            field=_dotted(field_path) or None,
            hint=hint,
        )

    def strategy(self, name: str) -> Strategy:
        """A strategy by name: the suite's own first, then the built-in ones."""
        return {**BUILTIN_STRATEGIES, **self.strategies}[name]

    def measurement_settings(
        self, name: str, spec: ModelSpec | None = None, extra: dict[str, Any] | None = None, axes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The full settings of a measurement (defaults filled in): the suite's, then the cell's values of
        dotted-path axes (`train.lr`: 0.01), then the model's own overrides, then an include rule's."""
        values = self.settings.get(name) or {}
        for path, value in (axes or {}).items():
            if axis_paths.head(path) == name:
                values = deep_merge(values, axis_paths.override(path, value))
        if spec is not None and spec.settings.get(name):
            values = deep_merge(values, spec.settings[name])
        if extra and extra.get(name):
            values = deep_merge(values, extra[name])
        return get_measurement(name).Settings.model_validate(values).config_dump()

    def resolved_dict(self) -> dict[str, Any]:
        """The suite as run (profile applied), for the results store."""
        data = self.model_dump(mode="json", exclude={"profiles", "default_profile"})
        data["matrix"].update(self.matrix.paths)
        data["profile"] = self._profile
        data["source"] = str(self._path) if self._path else None
        return data


def _differs(models: list[ModelSpec], name: str) -> bool:
    specs = [m.model_dump() for m in models if m.name == name]
    return len({repr(sorted(s.items())) for s in specs}) == len(specs)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(lines: LineMap, path: tuple, profile: str | None) -> int | None:
    """Prefer the line inside the active profile's override, if the field was set there."""
    candidates = [tuple(path)]
    # a dotted axis may be written nested in YAML ({train: {lr: [..]}}): look it up split, too
    split = tuple(q for p in path for q in (p.split(".") if axis_paths.is_dotted(p) else [p]))
    if split != tuple(path):
        candidates.append(split)
    for candidate in candidates:
        if profile is not None:
            prof_path = ("profiles", profile) + candidate
            if prof_path in lines:
                return lines[prof_path]
        if candidate in lines:
            return lines[candidate]
    return line_of(lines, tuple(path))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; lists and scalars in `override` replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _choose_profile(data: dict[str, Any], profile: str | None, file: str, lines: LineMap) -> str | None:
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise InputError("must be a mapping of profile name -> overrides", file=file, line=line_of(lines, ("profiles",)), field="profiles")
    where: tuple = ("profiles",)  # an unknown --profile points at the profiles; an unknown default at itself
    if profile is None:
        default = data.get("default_profile")
        where = ("default_profile",)
        if isinstance(default, dict):
            device_name = data.get("device", "auto")
            if device_name not in ("auto", "cpu", "cuda"):
                raise InputError(f"unknown device {device_name!r}", file=file, line=line_of(lines, ("device",)), field="device",
                                 hint="use auto, cpu or cuda")
            device = resolve_device(device_name).type
            default = default.get(device)
            where += (device,)
        profile = default
        if profile is None:
            return None
        if not isinstance(profile, str):
            raise InputError(f"a profile name is a string (got {profile!r})", file=file, line=line_of(lines, where), field=_dotted(where),
                             hint="e.g. default_profile: quick, or {cpu: quick, cuda: full}")
    if profile not in profiles:
        names = sorted(profiles)
        hint = did_you_mean(profile, names) or (f"profiles here: {', '.join(names)}" if names else "this suite defines no profiles")
        raise InputError(f"unknown profile '{profile}'", file=file, line=line_of(lines, where), field="profile" if where == ("profiles",) else _dotted(where), hint=hint)
    override = profiles[profile]
    if not isinstance(override, dict):
        raise InputError("a profile is a mapping of fields to override", file=file, line=line_of(lines, ("profiles", profile)), field=f"profiles.{profile}")
    for key in ("profiles", "default_profile"):
        if key in override:
            raise InputError(f"a profile cannot set '{key}'", file=file, line=line_of(lines, ("profiles", profile, key)), field=f"profiles.{profile}.{key}")
    return profile


def _pydantic_errors(exc: ValidationError, file: str, lines: LineMap, profile: str | None, data: dict) -> InputError:
    errors = []
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
            from bench.executors import EXECUTORS

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
        if any(e.field == _dotted(loc[:3] if loc[:1] == ("matrix",) else loc) for e in errors) and loc[:1] == ("matrix",):
            continue
        field_loc = loc[:3] if loc[:1] == ("matrix",) else loc
        field_loc = tuple(p for p in field_loc if not (isinstance(p, str) and ("[" in p or p in ("int", "str", "literal"))))
        errors.append(InputError(msg, file=file, line=_line_for(lines, field_loc, profile), field=_dotted(field_loc), hint=hint))
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


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["a.b=1", "c=[x, y]"]` -> {"a": {"b": 1}, "c": ["x", "y"]}; values are YAML (safe loader)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got '{item}'", field="--set", hint="e.g. --set settings.train.epochs=3")
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
        raise _pydantic_errors(exc, file, lines, chosen, merged) from None
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
    from bench.models.registry import check_weights

    first = suite.matrix.resolution[0]
    resolution = spec.resolution or (None if first == "native" else first)
    try:
        check_weights(spec.name, weights, num_classes=suite.num_classes, resolution=resolution, **spec.kwargs)
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
    raise InputError(f"no suite '{name_or_path}'", hint=did_you_mean(name_or_path, known) or f"suites: {', '.join(known)}")
