"""Measurement settings: the pydantic models a suite validates under `settings.<measurement>`.

Plain schemas, no torch, so that validating a suite does not import the measurements' code. The
training settings are in bench.measure.train.settings.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# profile: flag a cell when ops without a FLOP formula may be more than this share of its work
DEFAULT_UNCOUNTED_THRESHOLD = 0.01


class Settings(BaseModel):
    """Base of every measurement's settings: unknown keys are errors.

    A cell's config holds its measurements' full settings, and its id hashes that config. A field added
    after cell ids were published is listed in `ID_NEUTRAL_DEFAULTS`: it is left out of the config while
    it holds its default, so existing cells (and committed baselines) keep their ids; set to anything
    else, it is part of the config and the id like any field.
    """

    model_config = ConfigDict(extra="forbid")
    ID_NEUTRAL_DEFAULTS: ClassVar[tuple[str, ...]] = ()

    def config_dump(self) -> dict[str, Any]:
        """The settings as a cell's config records them (see `ID_NEUTRAL_DEFAULTS`)."""
        data = self.model_dump(mode="json")
        defaults = type(self)().model_dump(mode="json") if self.ID_NEUTRAL_DEFAULTS else {}
        for name in self.ID_NEUTRAL_DEFAULTS:
            if data.get(name) == defaults.get(name):
                data.pop(name, None)
        return data


class ProfileSettings(Settings):
    batch_size: int = 1
    train_flops: bool | Literal["auto"] = Field(
        "auto",
        description="count forward + backward FLOPs per training image: true, false, or auto (when the cell trains)",
    )
    uncounted_share_threshold: float = Field(
        DEFAULT_UNCOUNTED_THRESHOLD,
        ge=0,
        le=1,
        description="flag the cell when ops without a FLOP formula may be more than this share of its work",
    )

    ID_NEUTRAL_DEFAULTS = ("train_flops", "uncounted_share_threshold")


class SpeedSettings(Settings):
    warmup_iters: int = Field(
        3, ge=1, description="at least this many untimed warm-up calls (the first call is never timed)"
    )
    warmup_max_iters: int = Field(
        30, ge=1, description="warm-up goes on until the last warmup_window calls settle, at most this many calls"
    )
    warmup_window: int = Field(
        3,
        ge=2,
        description="warm-up has settled when this many successive calls are within warmup_tolerance of their median",
    )
    warmup_tolerance: float = Field(
        0.05, gt=0, description="relative: 0.05 = each of the window's times within 5% of their median"
    )
    warmup_max_time_s: float = Field(
        10.0, gt=0, description="stop warming up after this long even if not settled (recorded)"
    )
    min_repeats: int = Field(10, ge=1, description="at least this many timed batches")
    min_time_s: float = Field(1.0, ge=0, description="and at least this many seconds of timed batches")
    max_repeats: int = Field(10_000, ge=1)
    max_time_s: float = Field(60.0, gt=0, description="stop timing after this long even if min_repeats is not met")
    reference: bool = Field(True, description="time a fixed reference matmul beside each batch (latency_vs_reference)")
    oom_fallback: bool = Field(
        False,
        description="opt-in: after out of memory, retry at half the batch size (down to 1); "
        "the batch size used and the fallback are recorded and shown in reports",
    )

    energy: bool = Field(
        True,
        description="measure energy per image where a counter is readable (RAPL, NVML): an idle baseline, then the "
        "batch repeated for energy_min_time_s (bench.measure.energy); elsewhere the record says why not, at no cost",
    )
    energy_idle_s: float = Field(1.0, gt=0, description="the idle baseline's length, measured beside the cell")
    energy_min_time_s: float = Field(2.0, gt=0, description="the loaded window's length, at least")
    compile_backend: str = Field(
        "inductor", description="torch.compile's backend for compile: true cells (inductor; eager: dynamo alone)"
    )
    compile_fallback: bool = Field(
        False,
        description="opt-in: when torch.compile fails, time the model eager instead and record the error; "
        "otherwise the cell fails",
    )
    backend_tolerance: float = Field(
        1e-3, gt=0, description="backend: onnxruntime fails the cell beyond this max |Δlogit| / the logits' range"
    )
    backend_min_top1: float = Field(
        31 / 32, ge=0, le=1, description="backend: onnxruntime fails the cell below this top-1 agreement with eager"
    )

    ID_NEUTRAL_DEFAULTS = (
        "warmup_max_iters",
        "warmup_window",
        "warmup_tolerance",
        "warmup_max_time_s",
        "oom_fallback",
        "energy",
        "energy_idle_s",
        "energy_min_time_s",
        "backend_tolerance",
        "backend_min_top1",
        "compile_backend",
        "compile_fallback",
    )
