"""`profile`: parameter counts and MACs/FLOPs at the cell's resolution, batch 1.

FLOPs = 2 x MACs, both reported (see bench.flops for what is counted and the attention handles).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.flops import DEFINITION, count_flops, count_params
from bench.measure.base import CellContext, Measurement, Settings, register_measurement


class ProfileSettings(Settings):
    batch_size: int = 1


@register_measurement
class Profile(Measurement):
    name = "profile"
    Settings = ProfileSettings
    description = "params (total, trainable) and MACs/FLOPs of one forward pass"

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        total, trainable = count_params(ctx.model)
        res = ctx.cell.resolution
        x = torch.randn(self.settings.batch_size, 3, res, res, device=ctx.device)
        with torch.no_grad():
            count = count_flops(ctx.model, x)
        return {
            "params": total,
            "params_trainable": trainable,
            "macs": count.macs,
            "flops": count.flops,
            "gmacs": count.macs / 1e9,
            "gflops": count.flops / 1e9,
            "gmacs_attention_handles": count.handled_macs / 1e9,
            "flops_batch_size": self.settings.batch_size,
            "flops_definition": DEFINITION,
            "flops_by_op": count.by_op,
            "uncounted_ops": sorted(count.uncounted),
        }
