"""`train` settings and the sampling/loss strategies: plain schemas a suite validates, no torch.

Strategies are what the founding experiment compared. Samplers: `none` (shuffle), `weighted` (inverse
class frequency, with replacement), `sqrt` (inverse square root of frequency). Losses: `ce`,
`weighted_ce`, `focal`, `label_smoothing` (bench.measure.train.strategies builds them). Named
combinations are suite axis values; a suite may define more under `strategies:`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.data.base import IMAGENET_MEAN, IMAGENET_STD
from bench.measure.catalogue import SELECTION, VAL_MACRO_F1
from bench.measure.settings import Settings


class Strategy(BaseModel):
    """One sampling + loss recipe."""

    model_config = ConfigDict(extra="forbid")

    sampler: Literal["none", "weighted", "sqrt"] = "none"
    loss: Literal["ce", "weighted_ce", "focal", "label_smoothing"] = "ce"
    class_weights: Literal["inverse", "founding"] = Field(
        "inverse", description="weights of weighted_ce (and focal alpha='weights')"
    )
    gamma: float = Field(2.0, ge=0, description="focal loss focusing parameter")
    alpha: float | Literal["weights"] | None = Field(
        None, description="focal loss: None, a scalar, or the class weights"
    )
    smoothing: float = Field(0.1, ge=0, lt=1, description="label_smoothing epsilon")


BUILTIN_STRATEGIES: dict[str, Strategy] = {
    "none": Strategy(),
    "weighted_sampler": Strategy(sampler="weighted"),
    "sqrt_sampler": Strategy(sampler="sqrt"),
    "weighted_loss": Strategy(loss="weighted_ce"),
    "weighted_loss_only": Strategy(loss="weighted_ce"),
    "founding_weighted_loss": Strategy(loss="weighted_ce", class_weights="founding"),
    "both": Strategy(sampler="weighted", loss="weighted_ce"),
    "focal": Strategy(loss="focal", gamma=2.0),
    "label_smoothing": Strategy(loss="label_smoothing", smoothing=0.1),
}


class DataSettings(Settings):
    kind: str = Field(
        "synthetic-artists",
        description="csv, imagefolder, digits, synthetic-artists, cifar10, stl10, cats-vs-dogs, "
        "synthetic-cifar10, synthetic-stl10, synthetic-cats-vs-dogs",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="the kind's options (csv, root, ...)")
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of the images held out for selection (early stopping, the best checkpoint)"
    )
    test_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="share held out for every reported metric; a source with its own test files "
        "(cifar10, stl10) uses those, and validation comes out of its training files",
    )
    split_seed: int = Field(0, description="seeds the split; an axis like seed (its variance shows beside the seeds')")
    subset: float | None = Field(None, gt=0, le=1, description="stratified fraction of the data to use")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hflip: bool = True
    crop_pad: int = Field(0, ge=0, description="random-crop padding in pixels (0: no crop)")
    on_bad_image: Literal["error", "skip"] = "error"
    workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fractions_leave_training_images(self) -> DataSettings:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction is {self.val_fraction + self.test_fraction:g}: "
                "leave images to train on (e.g. 0.1 and 0.2)"
            )
        return self


class EarlyStopping(Settings):
    metric: str = Field(VAL_MACRO_F1.key, description=f"the validation metric watched: {', '.join(SELECTION)}")
    patience: int = Field(7, ge=1)

    @field_validator("metric")
    @classmethod
    def _selection_metric(cls, value: str) -> str:
        if value not in SELECTION:
            raise ValueError(f"Input should be {', '.join(repr(k) for k in SELECTION)}")
        return value


class TrainSettings(Settings):
    data: DataSettings = Field(default_factory=DataSettings)
    epochs: int = Field(10, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)
    scheduler: Literal["none", "plateau", "cosine", "step"] = "none"
    step_size: int = Field(10, ge=1)
    lr_gamma: float = Field(0.1, gt=0)
    early_stopping: EarlyStopping | None = Field(default_factory=EarlyStopping)
    grad_clip: float | None = Field(None, gt=0)
    freeze_backbone: bool = False
    deterministic: bool = False
    eval_batch_size: int = Field(128, ge=1)
    cpu_emulated_precision: bool = Field(
        False,
        description="train in bf16/fp16 on a CPU that has no arithmetic units for it (emulated: tens of times slower than fp32)",
    )
    energy: bool = Field(
        True, description="energy of the training steps where a counter is readable (RAPL, NVML), net of idle"
    )
    energy_idle_s: float = Field(1.0, gt=0, description="energy: the idle baseline's length before training")
    end_to_end: bool = Field(
        True,
        description="after training, time inference through the real data path (decode, transform, batch, model) "
        "on the test images beside the model alone",
    )
    end_to_end_min_time_s: float = Field(1.0, gt=0, description="end_to_end: time at least this long")

    ID_NEUTRAL_DEFAULTS = ("energy", "energy_idle_s", "end_to_end", "end_to_end_min_time_s")
