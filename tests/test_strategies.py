"""Each sampling/loss strategy does what it says, checked against hand computations and references."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from bench.data.sources import long_tail_counts
from bench.measure.train.settings import BUILTIN_STRATEGIES, Strategy
from bench.measure.train.strategies import FocalLoss, class_weights, make_loss, make_sampler


def _long_tail_labels(ratio=20, n_max=200, classes=10):
    counts = long_tail_counts(n_max, classes, ratio)
    return np.repeat(np.arange(classes), counts), counts


def test_long_tail_is_20_to_1():
    _, counts = _long_tail_labels()
    assert counts[0] == 200 and counts[-1] == 10 and counts == sorted(counts, reverse=True)


def test_weighted_sampler_batches_are_close_to_balanced():
    labels, counts = _long_tail_labels()
    g = torch.Generator().manual_seed(0)
    drawn = np.concatenate([labels[list(make_sampler("weighted", labels, g))] for _ in range(5)])  # 5 epochs
    assert len(drawn) == 5 * len(labels)  # one epoch = dataset size, with replacement
    share = np.bincount(drawn, minlength=10) / len(drawn)
    # balanced = 0.1 each; with 2,945 draws the binomial sd is 0.0055: allow 4 sd
    assert np.all(np.abs(share - 0.1) < 0.022), share
    plain = np.concatenate([labels[list(make_sampler("none", labels, g))]])
    assert np.bincount(plain)[0] / len(plain) == pytest.approx(200 / len(labels))  # shuffle keeps the tail


def test_sqrt_sampler_sits_between():
    labels, counts = _long_tail_labels()
    g = torch.Generator().manual_seed(1)
    drawn = np.concatenate([labels[list(make_sampler("sqrt", labels, g))] for _ in range(10)])
    share = np.bincount(drawn, minlength=10) / len(drawn)
    expected = np.sqrt(counts) / np.sqrt(counts).sum()
    assert np.all(np.abs(share - expected) < 0.02)
    assert share[0] > 0.1 > share[-1]


def test_inverse_weights_equal_sklearn_balanced():
    labels, counts = _long_tail_labels()
    ours = class_weights(np.array(counts)).numpy()
    ref = compute_class_weight("balanced", classes=np.arange(10), y=labels)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_founding_formula_weights():
    w = class_weights(np.array([600, 300, 100]), "founding").numpy()
    n = 1000
    np.testing.assert_allclose(
        w, [((1 - 600 / n) * 0.25) ** 2, ((1 - 300 / n) * 0.25) ** 2, ((1 - 100 / n) * 0.25) ** 2], rtol=1e-6
    )
    assert w[0] == pytest.approx(0.01)


def test_weighted_ce_equals_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]])
    target = torch.tensor([0, 2, 1])
    counts = np.array([6, 3, 1])
    loss = make_loss(Strategy(loss="weighted_ce"), counts)(logits, target).item()
    w = [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)]
    nll = []
    for row, t in zip(logits.tolist(), target.tolist()):
        lse = math.log(sum(math.exp(v) for v in row))
        nll.append(lse - row[t])
    hand = sum(w[t] * l for t, l in zip(target.tolist(), nll)) / sum(w[t] for t in target.tolist())
    assert loss == pytest.approx(hand, rel=1e-6)


def test_focal_gamma_zero_is_ce():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 7), torch.randint(0, 7, (16,))
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), rel=1e-6
    )


def test_focal_down_weights_easy_examples_by_hand():
    logits = torch.tensor([[3.0, 0.0], [0.0, 0.2]])
    target = torch.tensor([0, 0])
    p = torch.softmax(logits, 1)[:, 0].tolist()
    hand = sum(-((1 - pt) ** 2) * math.log(pt) for pt in p) / 2
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(hand, rel=1e-6)
    alpha = torch.tensor([0.25, 1.0])
    assert FocalLoss(gamma=2.0, alpha=alpha)(logits, target).item() == pytest.approx(0.25 * hand, rel=1e-6)


def test_label_smoothing_matches_torch_and_hand():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.3, -0.2, 0.9]])
    target = torch.tensor([1, 2])
    eps = 0.1
    ours = make_loss(Strategy(loss="label_smoothing", smoothing=eps), np.array([1, 1, 1]))(logits, target).item()
    ref = F.cross_entropy(logits, target, label_smoothing=eps).item()
    logp = torch.log_softmax(logits, 1)
    hand = ((1 - eps) * -logp[[0, 1], target] + eps * -logp.mean(1)).mean().item()
    assert ours == pytest.approx(ref, rel=1e-6) == pytest.approx(hand, rel=1e-6)


def test_builtin_named_combinations():
    assert BUILTIN_STRATEGIES["both"].sampler == "weighted" and BUILTIN_STRATEGIES["both"].loss == "weighted_ce"
    assert BUILTIN_STRATEGIES["weighted_loss_only"].sampler == "none"
    assert BUILTIN_STRATEGIES["none"] == Strategy()
