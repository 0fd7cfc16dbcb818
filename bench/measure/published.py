"""Published figures that bench's own counts (the `profile` measurement) are checked against (and that reports show beside them).

EfficientNet: Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019, Table 2
(ImageNet). The paper's "FLOPs" are multiply-adds (MACs), rounded to two significant figures, and its
params to two significant figures ("5.3M", "66M").
"""

from __future__ import annotations

from bench.measure.catalogue import FLOPS_BATCH_SIZE, MACS, PARAMS
from bench.models.registry import get_entry

# name: (params, MACs) as printed in the paper's Table 2.
EFFICIENTNET_TABLE2: dict[str, tuple[float, float]] = {
    "efficientnet_b0": (5.3e6, 0.39e9),
    "efficientnet_b1": (7.8e6, 0.70e9),
    "efficientnet_b2": (9.2e6, 1.0e9),
    "efficientnet_b3": (12e6, 1.8e9),
    "efficientnet_b4": (19e6, 4.2e9),
    "efficientnet_b5": (30e6, 9.9e9),
    "efficientnet_b6": (43e6, 19e9),
    "efficientnet_b7": (66e6, 37e9),
}


def efficientnet_paper_rows(results) -> list[dict]:
    """EfficientNets measured at native resolution and batch 1, beside Table 2: one row per model.

    `results` are CellResults; a model measured in several cells appears once (its first such cell).
    """
    rows: list[dict] = []
    seen: set[str] = set()
    for r in results:
        c = r.cell
        params, macs = PARAMS.of(r), MACS.of(r)
        if c.model not in EFFICIENTNET_TABLE2 or macs is None or c.model in seen:
            continue
        if c.resolution != get_entry(c.model).native_resolution or (FLOPS_BATCH_SIZE.of(r) or 1) != 1:
            continue
        seen.add(c.model)
        paper_params, paper_macs = EFFICIENTNET_TABLE2[c.model]
        rows.append(
            {
                "model": c.model,
                "resolution": c.resolution,
                PARAMS.key: params,
                "paper_params": paper_params,
                "params_ratio": params / paper_params,
                MACS.key: macs,
                "paper_macs": paper_macs,
                "macs_ratio": macs / paper_macs,
            }
        )
    return sorted(rows, key=lambda row: row["model"])


def paper_figure(value: float) -> str:
    """A Table 2 figure as the paper prints it: two significant figures ('5.3', '66', '0.39')."""
    return f"{value:#.2g}".rstrip(".")
