"""Sampling and loss strategies for long-tailed data: what the founding experiment compared.

Samplers: `none` (shuffle), `weighted` (inverse class frequency, WeightedRandomSampler with replacement,
one epoch = dataset size), `sqrt` (inverse square root of frequency: a milder rebalancing).
Losses: `ce`, `weighted_ce` (class weights: `inverse` = N / (C * n_c), scikit-learn's "balanced",
mean 1 over samples; or the founding formula ((1 - n_c/N) * 0.25)^2), `focal` (gamma, alpha), and
`label_smoothing` (torch's own). Named combinations (`none`, `weighted_sampler`, `weighted_loss`,
`both`, `focal`, ...) are suite axis values; a suite may define more under `strategies:`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler

from bench.measure.train.settings import Strategy


def class_weights(counts: np.ndarray, formula: str = "inverse") -> torch.Tensor:
    """Per-class loss weights from training class counts."""
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        raise ValueError("every class needs at least one training sample")
    n, c = counts.sum(), len(counts)
    if formula == "inverse":
        w = n / (c * counts)
    elif formula == "founding":
        w = ((1.0 - counts / n) * 0.25) ** 2
    else:
        raise ValueError(f"unknown class weight formula {formula!r}")
    return torch.tensor(w, dtype=torch.float32)


def make_sampler(kind: str, labels: np.ndarray, generator: torch.Generator) -> Sampler:
    """The training sampler; weighted ones draw len(labels) samples with replacement per epoch."""
    labels = np.asarray(labels)
    if kind == "none":
        return RandomSampler(range(len(labels)), generator=generator)
    counts = np.bincount(labels).astype(np.float64)
    per_class = 1.0 / counts if kind == "weighted" else 1.0 / np.sqrt(counts)
    if kind not in ("weighted", "sqrt"):
        raise ValueError(f"unknown sampler {kind!r}")
    weights = torch.tensor(per_class[labels], dtype=torch.double)
    return WeightedRandomSampler(
        weights,  # type: ignore[arg-type]  # torch's stub says Sequence[float]; a Tensor works at runtime
        num_samples=len(labels),
        replacement=True,
        generator=generator,
    )


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): mean over the batch of -alpha_t (1 - p_t)^gamma log p_t.

    With gamma = 0 and no alpha it is exactly cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | float | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        if isinstance(alpha, torch.Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        if isinstance(self.alpha, torch.Tensor):
            loss = loss * self.alpha.to(loss.device)[target]
        elif self.alpha is not None:
            loss = loss * self.alpha
        return loss.mean()


def make_loss(strategy: Strategy, counts: np.ndarray) -> nn.Module:
    """The loss of a strategy, given the training class counts."""
    if strategy.loss == "ce":
        return nn.CrossEntropyLoss()
    if strategy.loss == "weighted_ce":
        return nn.CrossEntropyLoss(weight=class_weights(counts, strategy.class_weights))
    if strategy.loss == "label_smoothing":
        return nn.CrossEntropyLoss(label_smoothing=strategy.smoothing)
    alpha = class_weights(counts, strategy.class_weights) if strategy.alpha == "weights" else strategy.alpha
    return FocalLoss(gamma=strategy.gamma, alpha=alpha)
