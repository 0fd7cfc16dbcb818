"""The noise tests behind "within noise" in reports: macro-F1 by bincounts equals scikit-learn's, and the
verdict logic on hand-made samples."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from bench.report.noise import (
    bootstrap_indices,
    judge_delta,
    macro_f1_batch,
    paired_bootstrap_delta,
    percentile_interval,
)
from bench.report.plots import Point, frontier


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 7
    y_true = rng.integers(0, k - 1, size=200)  # class 6 never true
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, k, size=200))
    ours = macro_f1_batch(y_true, y_pred, k)[0]
    assert ours == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)


def test_bootstrap_rows_equal_sklearn_on_the_same_resamples():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, size=60)
    y_pred = np.where(rng.random(60) < 0.7, y_true, rng.integers(0, 5, size=60))
    idx = bootstrap_indices(60, resamples=20, seed=3)
    batch = macro_f1_batch(y_true[idx], y_pred[idx], 5)
    for row, ix in zip(batch, idx):
        assert row == pytest.approx(f1_score(y_true[ix], y_pred[ix], average="macro"), abs=1e-12)


def test_hand_computed_macro_f1():
    # class 0: tp=1 fp=1 fn=1 -> F1 0.5; class 1: tp=1 fp=1 fn=0 -> 2/3; class 2: tp=0 fp=0 fn=1 -> 0
    assert macro_f1_batch([0, 0, 1, 2], [0, 1, 1, 0], 3)[0] == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_identical_predictions_are_within_noise():
    y = np.arange(100) % 4
    pred = np.where(np.arange(100) % 3 == 0, (y + 1) % 4, y)
    deltas = paired_bootstrap_delta(y, pred, pred, 4, resamples=200)
    assert np.all(deltas == 0)
    assert judge_delta([0.7], [0.7], deltas).verdict == "within noise"


def test_a_clearly_better_model_is_real_and_a_coin_flip_is_not():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=500)
    weak = np.where(rng.random(500) < 0.4, y, rng.integers(0, 5, size=500))
    strong = np.where(rng.random(500) < 0.9, y, rng.integers(0, 5, size=500))
    verdict = judge_delta([0.5], [0.9], paired_bootstrap_delta(y, weak, strong, 5))
    assert verdict.verdict == "real" and verdict.ci_low > 0.2
    # one prediction changed out of 500: the interval straddles 0
    nudged = weak.copy()
    nudged[0] = y[0]
    tiny = judge_delta([0.5], [0.501], paired_bootstrap_delta(y, weak, nudged, 5))
    assert tiny.verdict == "within noise" and tiny.ci_low <= 0 <= tiny.ci_high


def test_seed_t_test_exact_numbers():
    # Welch: means 0.5 and 0.6, both std 0.1, n=3 -> t = 0.1 / sqrt(2*0.01/3) = 1.2247, df = 4 -> p = 0.2879
    v = judge_delta([0.4, 0.5, 0.6], [0.5, 0.6, 0.7], None)
    assert v.delta == pytest.approx(0.1)
    assert v.seed_p == pytest.approx(0.28786, abs=1e-4)
    assert v.verdict == "within noise" and v.n_seeds == 3
    far = judge_delta([0.40, 0.41, 0.42], [0.60, 0.61, 0.62], None)
    assert far.seed_p < 0.001 and far.verdict == "real"
    assert judge_delta([0.5], [0.6], None).verdict == "noise unknown"


def test_percentile_interval_exact():
    assert percentile_interval(np.arange(101, dtype=float)) == pytest.approx((2.5, 97.5), abs=1e-12)


def test_frontier_on_hand_made_points():
    pts = [Point("a", "f", 1, 0.5), Point("b", "f", 2, 0.4), Point("c", "f", 3, 0.8), Point("d", "f", 4, 0.7)]
    assert [p.label for p in frontier(pts, higher_x_better=False)] == ["a", "c"]
    assert [p.label for p in frontier(pts, higher_x_better=True)] == ["d", "c"]
