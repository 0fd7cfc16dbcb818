"""Is a macro-F1 difference real? A paired bootstrap over the validation images, and a t-test over seeds.

Two cells evaluated on the same validation images (same data, same split) are compared image by image:
resample the images with replacement B times, recompute both cells' macro-F1 on each resample, and take
the 2.5th and 97.5th percentiles of the difference. When that interval contains 0, the difference is
within the noise of the validation set. With two or more seeds per side, Welch's t-test over the
per-seed values adds the seed-to-seed noise. Plain arrays in, plain data out; no I/O.

Macro-F1 follows scikit-learn's `f1_score(average="macro")` exactly: the mean over the labels present
in `y_true` or `y_pred`, a label never predicted scoring 0. It is recomputed here with bincounts so
that a thousand resamples take milliseconds; a test checks it against scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

DEFAULT_RESAMPLES = 1000


def macro_f1_batch(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of `y_true`/`y_pred` (shape (B, n)); a 1-D pair gives one value."""
    y_true = np.atleast_2d(np.asarray(y_true, dtype=np.int64))
    y_pred = np.atleast_2d(np.asarray(y_pred, dtype=np.int64))
    rows = y_true.shape[0]
    offset = (np.arange(rows, dtype=np.int64) * n_classes)[:, None]
    size = rows * n_classes
    true_count = np.bincount((offset + y_true).ravel(), minlength=size).reshape(rows, n_classes)
    pred_count = np.bincount((offset + y_pred).ravel(), minlength=size).reshape(rows, n_classes)
    hit = y_true == y_pred
    tp = np.bincount((offset + y_true)[hit], minlength=size).reshape(rows, n_classes)
    denom = true_count + pred_count
    present = denom > 0
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape, dtype=np.float64), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


def bootstrap_indices(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_macro_f1(y_true, y_pred, n_classes: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Macro-F1 on `resamples` bootstrap resamples of the images."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    idx = bootstrap_indices(len(y_true), resamples, seed)
    return macro_f1_batch(y_true[idx], y_pred[idx], n_classes)


def paired_bootstrap_delta(
    y_true, pred_a, pred_b, n_classes: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """macro-F1(b) - macro-F1(a) on the same resamples of the images (paired)."""
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    idx = bootstrap_indices(len(y_true), resamples, seed)
    t = y_true[idx]
    return macro_f1_batch(t, pred_b[idx], n_classes) - macro_f1_batch(t, pred_a[idx], n_classes)


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class DeltaVerdict:
    """A difference of b over a, its bootstrap interval, the seed t-test and what they say together."""

    delta: float
    ci_low: float | None = None
    ci_high: float | None = None
    seed_p: float | None = None
    n_seeds: int = 1
    verdict: str = "noise unknown"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def judge_delta(
    values_a: list[float], values_b: list[float], boot_deltas: np.ndarray | None, alpha: float = 0.05
) -> DeltaVerdict:
    """Combine the seed values (each side's per-seed metric) with the paired bootstrap of the difference.

    - The difference is the mean over seeds of b minus the mean over seeds of a.
    - `within noise` when the bootstrap interval contains 0, or (two or more seeds per side) when Welch's
      t-test gives p >= alpha; `real` when the available tests all exclude 0; `noise unknown` when there
      is neither a bootstrap (no paired predictions) nor two seeds per side.
    """
    delta = float(np.mean(values_b) - np.mean(values_a))
    out = DeltaVerdict(delta=delta, n_seeds=min(len(values_a), len(values_b)))
    tests: list[bool] = []  # True: this test says "within noise"
    if boot_deltas is not None and len(boot_deltas):
        out.ci_low, out.ci_high = percentile_interval(boot_deltas)
        tests.append(out.ci_low <= 0 <= out.ci_high)
    if len(values_a) >= 2 and len(values_b) >= 2:
        if np.std(values_a) == 0 and np.std(values_b) == 0:
            p = 1.0 if delta == 0 else 0.0
        else:
            p = float(_stats.ttest_ind(values_b, values_a, equal_var=False).pvalue)
        out.seed_p = p
        tests.append(p >= alpha)
    if tests:
        out.verdict = "within noise" if any(tests) else "real"
    return out
