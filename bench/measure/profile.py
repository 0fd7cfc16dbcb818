"""`profile`: parameter counts and MACs/FLOPs at the cell's resolution, batch 1.

FLOPs = 2 x MACs, both reported (see bench.measure.flops for what is counted and the attention handles). Beside
the headline: the elementwise FLOPs (activations, adds, normalisation, pooling), counted apart so the
headline stays comparable with published tables; the FLOP coverage (ops the counter has no formula for,
and the share of the work they may represent, flagged above `uncounted_share_threshold`); and the
training FLOPs per image (forward + backward, torch's FlopCounterMode), which turn train img/s into
achieved FLOP/s.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.measure.base import CellContext, Measurement
from bench.measure.catalogue import (
    FLOPS,
    FLOPS_BATCH_SIZE,
    GFLOPS,
    GMACS,
    GMACS_ATTENTION,
    MACS,
    PARAMS,
    PARAMS_TRAINABLE,
    TRAIN_FLOPS_PER_IMAGE,
    TRAIN_GFLOPS_PER_IMAGE,
)
from bench.measure.flops import DEFINITION, count_flops, count_params, count_train_flops
from bench.measure.registry import register_measurement
from bench.measure.settings import ProfileSettings


def coverage(count, threshold: float) -> dict[str, Any]:
    """The FLOP-coverage fields of a count: elementwise work apart, uncounted ops and their share, the flag."""
    return {
        "elementwise_flops": count.elementwise_flops,
        "elementwise_gflops": count.elementwise_flops / 1e9,
        "elementwise_share": count.elementwise_share,
        "elementwise_by_op": count.elementwise_by_op,
        "uncounted_ops": sorted(count.uncounted),
        "uncounted": count.uncounted,
        "uncounted_flops_estimate": count.uncounted_flops_estimate,
        "uncounted_share": count.uncounted_share,
        "uncounted_share_threshold": threshold,
        "flops_coverage_flag": count.uncounted_share > threshold,
    }


@register_measurement
class Profile(Measurement[ProfileSettings]):
    name = "profile"
    Settings = ProfileSettings
    description = (
        "params (total, trainable), MACs/FLOPs of one forward pass, elementwise FLOPs, FLOP coverage, training FLOPs"
    )

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        s = self.settings
        total, trainable = count_params(ctx.model)
        res = ctx.cell.resolution
        x = torch.randn(s.batch_size, 3, res, res, device=ctx.device)
        with torch.no_grad():
            count = count_flops(ctx.model, x)
        out = {
            PARAMS.key: total,
            PARAMS_TRAINABLE.key: trainable,
            MACS.key: count.macs,
            FLOPS.key: count.flops,
            GMACS.key: count.macs / 1e9,
            GFLOPS.key: count.flops / 1e9,
            GMACS_ATTENTION.key: count.handled_macs / 1e9,
            FLOPS_BATCH_SIZE.key: s.batch_size,
            "flops_definition": DEFINITION,
            "flops_by_op": count.by_op,
            **coverage(count, s.uncounted_share_threshold),
        }
        wanted = ("train" in ctx.cell.measure) if s.train_flops == "auto" else s.train_flops
        if wanted and trainable:
            # batch 2 (BN-safe), divided back to one image; same input, so no RNG is drawn
            xb = x if s.batch_size >= 2 else x.expand(2, *x.shape[1:]).contiguous()
            train = count_train_flops(ctx.model, xb)
            out[TRAIN_FLOPS_PER_IMAGE.key] = train.flops // xb.shape[0]
            out[TRAIN_GFLOPS_PER_IMAGE.key] = train.flops / xb.shape[0] / 1e9
            out["train_to_forward"] = (
                (train.flops / xb.shape[0]) / (count.flops / s.batch_size) if count.flops else None
            )
            out["train_flops_by_op"] = train.by_op
        return out
