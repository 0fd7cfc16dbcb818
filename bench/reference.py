"""Published figures that bench's own counts are checked against (and that reports show beside them).

EfficientNet: Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019, Table 2
(ImageNet). The paper's "FLOPs" are multiply-adds (MACs), rounded to two significant figures, and its
params to two significant figures ("5.3M", "66M").
"""

from __future__ import annotations

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
