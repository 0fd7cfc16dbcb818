"""The cost model behind `bench plan`'s time estimates: plain data in, plain data out, no I/O.

A cell's time is the sum of what it does, each part costed from the work it takes (FLOPs, operator
calls, parameters, images; `Work`, from `bench.plan.workload`) and rates measured on this machine
(`Calibration`, from `bench.plan.calibration`):

- **build**: `build_fixed_s` + params x `init_s_per_param` (random init dominates);
- **profile**: the FLOP count runs the model at batch 1 (forward) and batch 2 (forward + backward) under
  Python dispatch modes, each operator call paying `profile_s_per_op` on top of its compute;
- **speed**: warm-up calls + timed calls of one batch forward, each followed by the reference matmul
  (`reference_s`); the number of calls follows `bench.measure.timing.time_loop`'s rules (min repeats, min time);
- **train**: per epoch, `n_train // batch` steps of forward + backward (training FLOPs = 3 x forward,
  the counted ratio is 2.9-3.0 for conv nets) + a fused Adam step (params x `optimizer_s_per_param`),
  an evaluation pass over the validation images at the eval batch size, and a copy of the weights when
  the metric improves (assumed every epoch: an upper bound); at the end a final evaluation and the
  checkpoint written. Early stopping is not predicted: the estimate assumes every epoch runs;
- **data**: rendering a synthetic dataset not yet in the cache, decoding images not yet decoded.

One forward of a batch of B images takes
`B x (dense/R_dense + grouped/R_grouped + elementwise/R_elementwise) + ops x op_s`:
dense conv/matmul FLOPs, grouped (depthwise) conv FLOPs and elementwise FLOPs each at their own
measured rate (a depthwise conv runs far below a dense one's FLOP/s), plus a fixed cost per operator
call, which dominates small models at small resolutions (efficientnet_b0 at 32 px). A training step
costs the same FLOPs x 3 at training rates, `ops x train_op_s` (a forward call, its backward calls and
autograd's bookkeeping) and the optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

TRAIN_FLOPS_PER_FORWARD = 3.0  # forward + backward (grad input + grad weight): counted 2.94x for resnet18
TRAIN_OPS_PER_FORWARD = 4.2  # operator calls of forward + backward over forward's: 4.05-4.4 counted for conv nets
FP32_BYTES = 4


@dataclass(frozen=True)
class Calibration:
    """Rates measured on one machine (bench.plan.calibration). FLOP/s figures are achieved, not peak."""

    dense_flops_s: dict[str, float]  # precision -> inference FLOP/s of dense conv/matmul work
    grouped_flops_s: dict[str, float]  # precision -> inference FLOP/s of depthwise/grouped conv work
    elementwise_flops_s: dict[str, float]  # precision -> elementwise FLOP/s (activations, norms, adds)
    train_dense_flops_s: dict[str, float]  # precision -> training FLOP/s (forward + backward) of dense work
    train_grouped_flops_s: dict[str, float]  # precision -> training FLOP/s of grouped conv work
    op_s: float  # fixed cost of one operator call in inference (dispatch, allocation), seconds
    train_op_s: float  # fixed cost per forward operator call of a training step (its backward calls, autograd)
    profile_s_per_op: float  # extra per operator call under the FLOP counter's dispatch modes
    optimizer_s_per_param: float  # one fused Adam step, per parameter
    init_s_per_param: float  # building a model with random init, per parameter
    copy_s_per_byte: float  # copying weights in memory (best checkpoint kept)
    save_s_per_byte: float  # writing a checkpoint to disk
    reference_s: float  # the speed measurement's reference matmul (bench.measure.timing.reference_workload)
    render_s_per_image: float  # rendering + saving one synthetic image
    decode_s_per_image: float  # decoding + resizing one image
    build_fixed_s: float = 0.0  # per cell, whatever the model (child process, result files)
    run_fixed_s: float = 0.0  # per run (the isolation server importing torch and bench)
    key: dict[str, Any] = field(default_factory=dict)  # what it was measured on: device, torch, threads
    train_elementwise_flops_s: dict[str, float] = field(
        default_factory=dict
    )  # training elementwise FLOP/s; none: inference's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def rate(self, table: str, precision: str) -> float:
        """A rate for a precision; one not measured falls back to fp32's."""
        rates = getattr(self, table)
        return rates.get(precision) or rates["fp32"]


@dataclass(frozen=True)
class ForwardWork:
    """One image's forward pass: FLOPs by kind (2 x MACs), elementwise FLOPs; operator calls per forward."""

    dense_flops: float
    grouped_flops: float = 0.0
    elementwise_flops: float = 0.0
    ops: int = 0

    @property
    def flops(self) -> float:
        return self.dense_flops + self.grouped_flops


@dataclass(frozen=True)
class SpeedWork:
    warmup_iters: int = 3
    warmup_max_iters: int = 30
    warmup_window: int = 3
    warmup_max_time_s: float = 10.0
    min_repeats: int = 10
    min_time_s: float = 1.0
    max_repeats: int = 10_000
    max_time_s: float = 60.0
    reference: bool = True


@dataclass(frozen=True)
class TrainWork:
    epochs: int
    n_train: int
    n_val: int
    n_test: int = 0  # evaluated once, with the selected checkpoint
    eval_batch_size: int = 128
    trainable_fraction: float = 1.0  # 1: all weights train; a frozen backbone: the head's share of params
    skipped: bool = False  # the cell will skip training (e.g. emulated bf16 on a CPU)
    served: bool = False  # an epoch-sweep cell read off a longer run: no training of its own


@dataclass(frozen=True)
class DataWork:
    render_images: int = 0  # synthetic images to generate (not yet in the cache)
    decode_images: int = 0  # images to decode (not yet decoded at this resolution)


@dataclass(frozen=True)
class Work:
    """What one cell does, as counts (bench.plan.workload builds it from a Cell)."""

    params: int
    forward: ForwardWork
    batch_size: int
    precision: str = "fp32"
    profile: bool = False
    profile_train: bool = (
        True  # the FLOP count also counts a training step (profile.train_flops; auto: when the cell trains)
    )
    speed: SpeedWork | None = None
    train: TrainWork | None = None
    data: DataWork = field(default_factory=DataWork)


def forward_s(fw: ForwardWork, batch: int, cal: Calibration, precision: str = "fp32") -> float:
    """One forward pass of `batch` images."""
    per_image = (
        fw.dense_flops / cal.rate("dense_flops_s", precision)
        + fw.grouped_flops / cal.rate("grouped_flops_s", precision)
        + fw.elementwise_flops / cal.rate("elementwise_flops_s", precision)
    )
    return batch * per_image + fw.ops * cal.op_s


def train_step_s(
    fw: ForwardWork, batch: int, params: int, cal: Calibration, precision: str = "fp32", trainable_fraction: float = 1.0
) -> float:
    """One training step: forward + backward of `batch` images and the optimizer step.

    A frozen backbone (trainable_fraction < 1) needs no backward through it: forward + the head's share."""
    k = 1.0 + (TRAIN_FLOPS_PER_FORWARD - 1.0) * trainable_fraction
    per_image = k * (
        fw.dense_flops / cal.rate("train_dense_flops_s", precision)
        + fw.grouped_flops / cal.rate("train_grouped_flops_s", precision)
        + fw.elementwise_flops
        / (
            cal.rate("train_elementwise_flops_s", precision)
            if cal.train_elementwise_flops_s
            else cal.rate("elementwise_flops_s", precision)
        )
    )
    calls = fw.ops * (cal.op_s + (cal.train_op_s - cal.op_s) * trainable_fraction)
    return batch * per_image + calls + params * trainable_fraction * cal.optimizer_s_per_param


def timed_calls(s: SpeedWork, call_s: float) -> tuple[int, int]:
    """(warm-up calls, timed calls) that bench.measure.timing.time_loop makes for a call of `call_s` seconds.

    Warm-up: at least `warmup_iters` (the untimed first call included) and a settled window (assumed
    settled as soon as it can be), at most `warmup_max_iters` calls or `warmup_max_time_s`. Timed: until
    `min_repeats` calls and `min_time_s` seconds of model time, capped by `max_repeats` / `max_time_s`."""
    warm = max(s.warmup_iters, s.warmup_window + 1)
    warm = min(warm, max(s.warmup_max_iters, s.warmup_iters))
    if call_s > 0:
        warm = min(warm, max(s.warmup_iters, math.ceil(s.warmup_max_time_s / call_s)))
    timed = max(s.min_repeats, math.ceil(s.min_time_s / call_s) if call_s > 0 else s.min_repeats)
    if call_s > 0:
        timed = min(timed, max(1, math.ceil(s.max_time_s / call_s)))
    return warm, min(timed, s.max_repeats)


def estimate(work: Work, cal: Calibration) -> dict[str, float]:
    """Seconds per part of one cell, and `total`."""
    fw, p = work.forward, work.precision
    parts = {
        "build": cal.build_fixed_s + work.params * cal.init_s_per_param,
        "profile": 0.0,
        "speed": 0.0,
        "train": 0.0,
        "data": 0.0,
    }
    if work.profile:
        # forward at batch 1 (fp32, inference) + forward and backward at batch 2 (training FLOPs), under dispatch modes
        counted_ops = fw.ops * (1 + (TRAIN_OPS_PER_FORWARD if work.profile_train else 0))
        parts["profile"] = (
            forward_s(fw, 1, cal)
            + (train_step_s(fw, 2, 0, cal) if work.profile_train else 0.0)
            + counted_ops * cal.profile_s_per_op
        )
    if work.speed is not None:
        call = forward_s(fw, work.batch_size, cal, p)
        warm, timed = timed_calls(work.speed, call)
        ref = cal.reference_s if work.speed.reference else 0.0
        parts["speed"] = (warm + timed) * (call + ref)
    t = work.train
    if t is not None and not t.skipped and not t.served:
        steps = t.n_train // work.batch_size  # drop_last
        step = train_step_s(fw, work.batch_size, work.params, cal, p, t.trainable_fraction)

        def evaluation(n: int) -> float:
            return math.ceil(n / t.eval_batch_size) * forward_s(fw, min(t.eval_batch_size, n), cal, p) if n else 0.0

        weights = work.params * FP32_BYTES
        per_epoch = steps * step + evaluation(t.n_val) + weights * cal.copy_s_per_byte
        final = evaluation(t.n_val) + evaluation(t.n_test)  # the selected checkpoint, on validation and test
        parts["train"] = t.epochs * per_epoch + final + weights * cal.save_s_per_byte
    if not (t is not None and (t.skipped or t.served)):
        parts["data"] = (
            work.data.render_images * cal.render_s_per_image + work.data.decode_images * cal.decode_s_per_image
        )
    parts["total"] = sum(parts.values())
    return parts


def total(estimates: list[dict[str, float]], cal: Calibration) -> float:
    """A run's time: its cells' and the run's fixed start-up."""
    return cal.run_fixed_s + sum(e["total"] for e in estimates)
