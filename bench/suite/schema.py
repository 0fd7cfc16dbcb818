"""The suite schema: what a person writes in YAML, validated into a `Suite`.

A suite names models, a `matrix` of axes that multiply, `include`/`exclude` rules, the measurements to
take per cell and their settings, and named `profiles` that override any field (`quick` for a CPU,
`full` for a GPU). Every error names the file, the line and the field, and suggests the closest valid
name; see `load_suite`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, get_args

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

from bench.core import axes as axis_paths
from bench.core.errors import InputError, did_you_mean
from bench.core.precision import Precision
from bench.core.yamlfile import LineMap
from bench.measure.catalogue import thresholds_from
from bench.measure.registry import list_measurements, settings_schema
from bench.measure.train.settings import BUILTIN_STRATEGIES, Strategy
from bench.models import get_entry, list_families
from bench.platform.allocator import check_setting as check_allocator
from bench.suite.locations import dotted, line_for

# how cells run: isolation modes and executors (bench.execution implements them)
IsolationMode = Literal["auto", "process", "none"]
ISOLATION_MODES: tuple[str, ...] = get_args(IsolationMode)
ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)


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


def _default_precisions() -> list[Precision]:
    return ["fp32"]


def _default_resolutions() -> list[int | Literal["native"]]:
    return ["native"]


def _default_backends() -> list[Literal["eager", "onnxruntime"]]:
    return ["eager"]


class Matrix(StrictModel):
    """Axes that multiply: every combination (per model) is one cell.

    Besides the built-in axes below, any field of a cell's config is an axis by its dotted path
    (`train.optimizer: [adam, adamw]`, `model.drop_rate: [0.0, 0.2]`; see `bench.core.axes`); those are kept
    in `paths`, in the order written, and checked against the settings' schema by `Suite.check_axes`.
    """

    precision: list[Precision] = Field(default_factory=_default_precisions, min_length=1)
    batch_size: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    resolution: list[PositiveInt | Literal["native"]] = Field(default_factory=_default_resolutions, min_length=1)
    channels_last: list[StrictBool] = Field(default_factory=lambda: [False], min_length=1)
    compile: list[StrictBool] = Field(default_factory=lambda: [False], min_length=1)
    backend: list[Literal["eager", "onnxruntime"]] = Field(
        default_factory=_default_backends, min_length=1, description="speed: eager PyTorch or ONNX Runtime (onnx extra)"
    )
    seed: list[NonNegativeInt] = Field(default_factory=lambda: [0], min_length=1)
    strategy: list[str] = Field(
        default_factory=lambda: ["none"], min_length=1, description="sampling/loss recipes (train)"
    )
    paths: dict[str, list[Any]] = Field(
        default_factory=dict, exclude=True, description="dotted-path axes (any config field)"
    )

    @model_validator(mode="before")
    @classmethod
    def _dotted_axes(cls, data: Any) -> Any:
        """Dotted keys (and nested mappings, as `--set matrix.train.lr=[..]` writes them) -> `paths`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        paths: dict[str, Any] = {}
        for key in list(data):
            if (
                not isinstance(key, str)
                or key == "paths"
                or (key in cls.model_fields and not isinstance(data[key], dict))
            ):
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


class MlflowOptions(StrictModel):
    """A suite's `mlflow:`: log each cell to MLflow while running, as `bench export mlflow` does afterwards."""

    tracking_uri: str | None = Field(None, description="MLflow's tracking URI; none: MLflow's own default")
    experiment: str | None = Field(None, description="the experiment's name; none: the suite's name")


class CostOptions(StrictModel):
    """A suite's `costs:`: what the machine costs and how clean its power is, given by the user (no network).

    Read by the report's efficiency section (cost per million images from time x price; CO2 from J/image x
    the grid's intensity); not part of cell ids."""

    price_per_hour: NonNegativeFloat | None = Field(None, description="what an hour of this machine costs")
    currency: str = Field("USD", description="the price's currency, shown beside the cost")
    grid_gco2_per_kwh: NonNegativeFloat | None = Field(
        None, description="the grid's carbon intensity in gCO2e/kWh (CO2 per million images where J/image is known)"
    )


class RayOptions(StrictModel):
    """How `executor: ray` runs cells (bench.execution.executors.RayExecutor)."""

    address: str | None = Field(
        None, description="the cluster: 'auto' (this node's), 'ray://HOST:10001'; none: a local cluster for the run"
    )
    num_cpus_per_cell: PositiveFloat = Field(1, description="CPUs Ray reserves for each cell's task")
    num_gpus_per_cell: NonNegativeFloat | None = Field(
        None, description="GPUs per cell (default: 1 when the device is cuda, else 0)"
    )
    max_retries: NonNegativeInt = Field(
        3, description="times a cell is run again when its worker is lost (killed, out of memory, node gone)"
    )
    torch_threads: PositiveInt | None = Field(
        None, description="torch threads in each task (default: num_cpus_per_cell, at least 1)"
    )


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
    num_classes: PositiveInt | None = Field(
        None,
        description="classes of the model's head; unset: the training data's class count when the suite trains "
        "(read before anything runs), else 1000",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    isolation: IsolationMode = Field(
        "auto", description="run cells in a fresh child process: auto (cells that measure speed), process (all), none"
    )
    memory_limit_mb: PositiveInt | None = Field(
        None,
        description="cap each child process's address space at its size after start-up + this (process isolation only; "
        "a CPU option: CUDA reserves far more address space than it uses)",
    )
    executor: ExecutorName = Field(
        "local",
        description="where cells run: local (this machine, one after the other) or ray (tasks on a Ray cluster); not part of a cell's id",
    )
    ray: RayOptions = Field(default_factory=RayOptions, description="options of executor: ray")
    mlflow: MlflowOptions | None = Field(
        None, description="log each cell to MLflow as it finishes (the mlflow extra; bench.tools.export_mlflow)"
    )
    costs: CostOptions | None = Field(
        None, description="price per hour and grid carbon intensity for the efficiency section; not part of cell ids"
    )
    cudnn_benchmark: StrictBool | None = Field(
        None,
        description="torch.backends.cudnn.benchmark in every cell (cuDNN autotunes convolutions for the shapes it meets; "
        "timm's benchmark.py turns it on); unset: PyTorch's default (off), and the cell ids stay as they were",
    )
    threads: PositiveInt | None = Field(
        None,
        description="torch threads for the run (recorded in env.json, not part of cell ids); None: torch's default",
    )
    allocator: str | None = Field(
        None,
        description="the C allocator of the processes that run cells: pinned (glibc's heap, no mmap, no trim), "
        "default (glibc as is), or the path of a preloaded allocator library (jemalloc, tcmalloc); unset: pinned on "
        "a CPU (bench.platform.allocator); recorded in env.json and each cell's speed record, not part of cell ids",
    )
    strategies: dict[str, Strategy] = Field(
        default_factory=dict, description="named strategies beside the built-in ones"
    )
    regression: dict[str, str | float] = Field(
        default_factory=dict, description="per-metric thresholds for `bench compare`: '10%', '0.01', 'exact'"
    )
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_profile: str | dict[Literal["cpu", "cuda"], str] | None = None

    _path: Path | None = PrivateAttr(None)
    _lines: LineMap = PrivateAttr(default_factory=dict)
    _profile: str | None = PrivateAttr(None)
    _class_counts: dict[str, int] = PrivateAttr(default_factory=dict)  # data source -> class count (num_classes unset)

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
        try:
            thresholds_from(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allocator")
    @classmethod
    def _allocator_known(cls, value: str | None) -> str | None:
        return None if value is None else check_allocator(value)

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
    def _settings_valid(self) -> Suite:
        for name, values in self.settings.items():
            if name not in list_measurements():
                hint = did_you_mean(name, list_measurements()) or f"use {', '.join(list_measurements())}"
                raise ValueError(f"settings for unknown measurement '{name}' — {hint}")
            settings_schema(name).model_validate(values or {})
        for spec in self.models:
            for name, values in spec.settings.items():
                if name not in list_measurements():
                    hint = did_you_mean(name, list_measurements()) or f"use {', '.join(list_measurements())}"
                    raise ValueError(f"settings for unknown measurement '{name}' in model '{spec.name}' — {hint}")
                settings_schema(name).model_validate(deep_merge(self.settings.get(name) or {}, values or {}))
        for rule in self.include:
            for name, values in (rule.get("settings") or {}).items():
                settings_schema(name).model_validate(deep_merge(self.settings.get(name) or {}, values))
        return self

    def check_names(self) -> None:
        """Checks that name a field (line and all), run by `load_suite` after validation: strategies are
        known, and no model is listed twice with the same settings."""
        known = {**BUILTIN_STRATEGIES, **self.strategies}
        places: list[tuple[tuple[str | int, ...], str]] = [
            (("matrix", "strategy", i), v) for i, v in enumerate(self.matrix.strategy)
        ]
        for kind in ("include", "exclude"):
            places += [
                ((kind, j, "strategy"), v) for j, r in enumerate(getattr(self, kind)) for v in r.get("strategy", [])
            ]
        for where, name in places:
            if name not in known:
                hint = (
                    did_you_mean(name, list(known)) or f"use one of {', '.join(known)} or define it under strategies:"
                )
                raise self.error(f"unknown strategy '{name}'", field_path=where, hint=hint)
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.models):
            if spec.name in seen and not _differs([self.models[seen[spec.name]], spec], spec.name):
                raise self.error(
                    f"model '{spec.name}' is listed twice with the same settings (first as models[{seen[spec.name]}])",
                    field_path=("models", i),
                    hint="remove one, or give them different settings",
                )
            seen.setdefault(spec.name, i)

    def check_axes(self) -> None:
        """Dotted-path axes (in the matrix and in include/exclude rules), run by `load_suite` after
        validation: each path names a real field (a suggestion when a part is misspelled), and each value
        is valid there, checked by the same schema as the field itself."""
        places: list[tuple[tuple, str, list[Any]]] = [
            (("matrix", path), path, values) for path, values in self.matrix.paths.items()
        ]
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
            hint = (
                f"{hint} ({first!r} is not a measurement or 'model')"
                if hint
                else (
                    f"start it with a measurement ({', '.join(measurements)}) or 'model' (a model keyword argument), e.g. train.optimizer"
                )
            )
            raise self.error(f"unknown axis '{path}'", field_path=where, hint=hint)
        if first not in self.measure:
            raise self.error(
                f"axis '{path}' sets a '{first}' setting, but the suite does not measure '{first}'",
                field_path=where,
                hint=f"add {first} to measure:, or remove the axis",
            )
        settings_model = settings_schema(first)
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
                raise self.error(
                    f"{msg} (got {value!r})",
                    field_path=where + (i,),
                    hint=f"a value for {'.'.join(rest)}, as under settings.{first}",
                ) from None

    def _check_dataset_option(self, path: str, option: str, where: tuple) -> None:
        from bench.data import dataset_option_names  # deferred: the data package imports torch

        kind = (self.settings.get("train") or {}).get("data", {}).get("kind", "synthetic-artists")
        names = dataset_option_names(kind) if isinstance(kind, str) else None
        if names is not None and option not in names:
            hint = did_you_mean(option, names) or f"options of '{kind}': {', '.join(names)}"
            raise self.error(
                f"axis '{path}': dataset kind '{kind}' has no option '{option}'", field_path=where, hint=hint
            )

    def _check_model_axis(self, path: str, rest: list[str], values: list[Any], where: tuple) -> None:
        from bench.models.builders import check_model_kwargs  # deferred: imports torch

        if len(rest) != 1:
            raise self.error(
                f"axis '{path}': name one keyword argument of the model builder, e.g. model.drop_rate", field_path=where
            )
        rule = getattr(self, where[0])[where[1]] if where[0] in ("include", "exclude") else {}
        specs = [
            spec
            for spec in self.models
            if spec.name in rule.get("model", [spec.name])
            and get_entry(spec.name).family in rule.get("family", [get_entry(spec.name).family])
        ]
        specs += [ModelSpec(name=n) for n in rule.get("model", []) if n not in {s.name for s in self.models}]
        for spec in specs:
            for i, value in enumerate(values):
                try:
                    check_model_kwargs(spec.name, {**spec.kwargs, rest[0]: value}, num_classes=self.num_classes or 1000)
                except InputError as exc:
                    raise self.error(
                        f"model '{spec.name}': {exc.message}",
                        field_path=where if exc.field == "name" else where + (i,),
                        hint=exc.hint,
                    ) from None

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
            line=line_for(self._lines, field_path, self._profile),
            field=dotted(field_path) or None,
            hint=hint,
        )

    def strategy(self, name: str) -> Strategy:
        """A strategy by name: the suite's own first, then the built-in ones."""
        return {**BUILTIN_STRATEGIES, **self.strategies}[name]

    def measurement_settings(
        self,
        name: str,
        spec: ModelSpec | None = None,
        extra: dict[str, Any] | None = None,
        axes: dict[str, Any] | None = None,
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
        return settings_schema(name).model_validate(values).config_dump()

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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; lists and scalars in `override` replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
