"""Is a macro-F1 difference real? A paired, hierarchical interval over test images and seeds, corrected for
multiple comparisons.

Two sides of a comparison (strategy A and strategy B, say) were trained with the same seeds on the same
splits and evaluated on the same test images. Their difference varies for two independent reasons:

- **the test images** (which images happened to be in the test set): estimated by a paired bootstrap that
  resamples the images with the *same* indices for both sides and for every seed evaluated on that split,
  so a shared hard image counts once for everyone, as it does in the data;
- **the seeds and splits** (which run of training happened): estimated from the spread of the per-seed
  differences on the same images (a random-effects model). With one seed it cannot be measured from the
  comparison itself; the caller passes a pooled estimate (the report pools the run's multi-seed
  comparisons), else the interval covers image noise only and the verdict is "inconclusive".

The two parts add up; the interval is Student's t with Welch–Satterthwaite degrees of freedom (a seed part
estimated from three seeds has two degrees of freedom, and the interval widens accordingly; a bootstrap
percentile interval over three seeds would not). A table of comparisons is adjusted by Holm's method
(family-wise error 5%, valid whatever the dependence between comparisons, which share a reference side):
a verdict of "real" then holds for the whole table at once. A difference smaller than the minimum effect
is "negligible", whatever its p-value; no interval (no paired predictions) is "inconclusive".
tests/test_report_noise.py checks the coverage and power on simulated classifiers.

Macro-F1 follows bench's one definition (bench.measure.train.metrics): the mean over all classes of the
data set, a class with no true and no predicted image scoring 0; recomputed here with bincounts so that
a thousand resamples take milliseconds, and checked against scikit-learn by a test. Plain arrays in,
plain data out; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

DEFAULT_RESAMPLES = 1000
DEFAULT_MIN_EFFECT = 0.005  # macro-F1: a smaller difference is negligible for choosing a model or a recipe
CONFIDENCE = 0.95


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
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape, dtype=np.float64), where=denom > 0)
    return f1.sum(axis=1) / n_classes


def bootstrap_indices(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_macro_f1(y_true, y_pred, n_classes: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Macro-F1 on `resamples` bootstrap resamples of the images."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    idx = bootstrap_indices(len(y_true), resamples, seed)
    return macro_f1_batch(y_true[idx], y_pred[idx], n_classes)


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Pair:
    """One seed (or split) of a comparison: both sides' predicted labels on the same test images."""

    split: str  # pairs evaluated on the same split share the bootstrap's image indices
    y_true: np.ndarray
    pred_a: np.ndarray
    pred_b: np.ndarray


@dataclass
class Difference:
    """macro-F1(b) - macro-F1(a) over the pairs, with its interval and what it rests on."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int
    n_images: int
    se: float
    df: float  # math.inf: normal
    image_var: float  # variance of the mean difference from the test images
    seed_var: float  # variance of one pair's difference from training (seed, split) beyond the images
    seed_var_df: float  # its degrees of freedom (0: not measured, the interval covers image noise only)
    seed_var_source: str  # "measured" (this comparison's pairs), "pooled" (other comparisons), "none"
    p_adjusted: float | None = None
    verdict: str = "inconclusive"

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in self.__dict__.items()}


def paired_difference(
    pairs: Sequence[Pair],
    n_classes: int,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    pooled_seed_var: tuple[float, float] | None = None,
    confidence: float = CONFIDENCE,
) -> Difference:
    """The interval of macro-F1(b) - macro-F1(a) (the module docstring's method). `pooled_seed_var`:
    (variance of one pair's difference from training, its degrees of freedom), used when the pairs cannot
    measure it (one pair)."""
    if not pairs:
        raise ValueError("no pairs to compare")
    rng = np.random.default_rng(seed)
    k = len(pairs)
    d = np.array(
        [
            macro_f1_batch(p.y_true, p.pred_b, n_classes)[0] - macro_f1_batch(p.y_true, p.pred_a, n_classes)[0]
            for p in pairs
        ]
    )
    boot = np.empty((resamples, k))
    indices: dict[str, np.ndarray] = {}
    for j, p in enumerate(pairs):
        if p.split not in indices:  # one set of resample indices per split, shared by its seeds and both sides
            indices[p.split] = rng.integers(0, len(p.y_true), size=(resamples, len(p.y_true)))
        idx = indices[p.split]
        t = p.y_true[idx]
        boot[:, j] = macro_f1_batch(t, p.pred_b[idx], n_classes) - macro_f1_batch(t, p.pred_a[idx], n_classes)
    image_var = float(np.var(boot.mean(axis=1), ddof=1))
    seed_var, seed_df, source = 0.0, 0.0, "none"
    if k >= 2:
        # the spread of the per-pair differences on these very images: what training (seed, split) adds.
        # It also holds part of the images' own noise (each seed errs on other images), which the bootstrap
        # counts already: kept, not subtracted, since an estimate netted from three seeds is too often ~0
        # (measured: coverage 92% netted, 97% kept; docs/measurements-log.md)
        seed_var, seed_df, source = float(np.var(d, ddof=1)), k - 1.0, "measured"
    elif pooled_seed_var is not None:
        seed_var, seed_df, source = pooled_seed_var[0], pooled_seed_var[1], "pooled"
    seed_part = seed_var / k
    var = image_var + seed_part
    se = math.sqrt(var)
    df = math.inf if seed_part == 0 or seed_df <= 0 else var**2 / (seed_part**2 / seed_df)  # Welch-Satterthwaite
    delta = float(d.mean())
    quantile = (
        float(_stats.t.ppf(0.5 + confidence / 2, df))
        if math.isfinite(df)
        else float(_stats.norm.ppf(0.5 + confidence / 2))
    )
    if se > 0:
        tail = _stats.t.sf(abs(delta) / se, df) if math.isfinite(df) else _stats.norm.sf(abs(delta) / se)
        p_value = float(min(1.0, 2 * tail))
    else:
        p_value = 1.0 if delta == 0 else 0.0
    return Difference(
        delta=delta,
        ci_low=delta - quantile * se,
        ci_high=delta + quantile * se,
        p_value=p_value,
        n_pairs=k,
        n_images=int(sum(len(p.y_true) for p in {p.split: p for p in pairs}.values())),
        se=se,
        df=df,
        image_var=image_var,
        seed_var=seed_var,
        seed_var_df=seed_df,
        seed_var_source=source,
    )


def pool_seed_variance(differences: Sequence[Difference]) -> tuple[float, float] | None:
    """The seed variance measured by several comparisons, pooled (weighted by degrees of freedom)."""
    measured = [d for d in differences if d.seed_var_source == "measured" and d.seed_var_df > 0]
    if not measured:
        return None
    df = sum(d.seed_var_df for d in measured)
    return sum(d.seed_var * d.seed_var_df for d in measured) / df, df


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def judge(
    differences: Sequence[Difference | None], *, min_effect: float = DEFAULT_MIN_EFFECT, alpha: float = 0.05
) -> None:
    """Set each difference's Holm-adjusted p-value and verdict, over the table they form (None: no paired
    predictions for that row, left out of the family)."""
    present = [d for d in differences if d is not None]
    for d, p in zip(present, holm([d.p_value for d in present])):
        d.p_adjusted = p
        if abs(d.delta) < min_effect:
            d.verdict = "negligible"
        elif d.seed_var_source == "none":  # one seed and nothing to pool: training's own noise is unknown
            d.verdict = "inconclusive"
        elif p < alpha and d.se > 0:
            d.verdict = "real"
        else:
            d.verdict = "within noise"
