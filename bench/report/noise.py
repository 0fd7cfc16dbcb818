"""Is a macro-F1 difference real? A paired, hierarchical interval over test images and seeds, corrected for
multiple comparisons.

Two sides of a comparison (strategy A and strategy B, say) were trained with the same seeds on the same
splits and evaluated on the same test images. Their difference varies for two independent reasons:

- **the test images** (which images happened to be in the test set): estimated by a paired bootstrap that
  resamples the images with the *same* indices for both sides and for every seed evaluated on that split,
  so a shared hard image counts once for everyone, as it does in the data;
- **the seeds and splits** (which run of training happened, and which images each run happened to get
  wrong): estimated from the spread of the per-seed differences on the same images (a random-effects
  model), pooled over the rows of the comparison table (`table_seed_variance`: the macro-F1 of every
  side and replicate fitted by side + replicate, the randomized-block two-way model; its residual is the
  pooled error of a classical ANOVA). Pooling assumes that the table's sides (strategies, say, of one
  model) vary alike from seed to seed; it is what makes three seeds usable: alone, a comparison's three
  seeds give its seed part 2 degrees of freedom (Student's t 4.30), a reference and four rows give 8
  (2.31). A table with one seed per side takes the estimate pooled over the report's other tables, and
  without any the interval covers image noise only and the verdict is "inconclusive".

The two parts add up; the interval is Student's t with Welch–Satterthwaite degrees of freedom. The images'
part, a bootstrap of the mean difference, also holds each seed's own per-image errors, which the seed part
holds again: kept, a conservative margin (the unbiased split, the images' part as the mean bootstrap
covariance between different seeds, covered 0 less often than asked when a table's sides differ). A table
of comparisons is adjusted by Holm's method (family-wise error 5%, valid whatever the dependence between
comparisons, which share a reference side): a verdict of "real" then holds for the whole table at once. A
difference smaller than the minimum effect is "negligible", whatever its p-value; no interval (no paired
predictions) is "inconclusive". `table_differences` is the report's whole procedure for one table;
tests/test_report_noise.py runs it on simulated tables and checks the coverage and power.

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
    """One replicate (seed, split seed) of a comparison: both sides' predicted labels on the same test images."""

    split: str  # pairs evaluated on the same split share the bootstrap's image indices
    y_true: np.ndarray
    pred_a: np.ndarray
    pred_b: np.ndarray
    replicate: str  # the seed and split seed both sides were trained with: a block of table_seed_variance's fit


@dataclass(frozen=True)
class Row:
    """One row of a comparison table: its pairs against a reference; rows naming the same `reference`
    compare against the same reference cells (their `pred_a` of a replicate are the same predictions)."""

    reference: str
    pairs: Sequence[Pair]
    n_classes: int


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
    seed_var: float  # variance of one pair's difference beyond the shared images: training, own image errors
    seed_var_df: float  # its degrees of freedom (0: not measured, the interval covers image noise only)
    seed_var_source: str  # "table" (pooled over its table), "run" (over the report's tables), "measured"
    # (this comparison's own pairs, when called without a pool), "pooled" (given), "none"
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
    pool_source: str = "pooled",
    confidence: float = CONFIDENCE,
) -> Difference:
    """The interval of macro-F1(b) - macro-F1(a) (the module docstring's method). `pooled_seed_var`:
    (variance of one pair's difference beyond the images the pairs share, its degrees of freedom), pooled
    over more comparisons (`table_seed_variance`, `pool_seed_variance`) and labelled `pool_source`; without
    it, the pairs' own spread (two or more pairs) or nothing (one pair)."""
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
    # the images' part: the bootstrap variance of the mean difference. It holds each pair's own per-image
    # errors (each seed errs on other images) as well as the images the pairs share, and the seed part holds
    # the former again: kept, a conservative margin (taking the shared part alone, the mean bootstrap
    # covariance between pairs, covered 0 less often than asked; docs/measurements-log.md)
    image_var = float(np.var(boot.mean(axis=1), ddof=1))
    seed_var, seed_df, source = 0.0, 0.0, "none"
    if pooled_seed_var is not None:
        seed_var, seed_df, source = pooled_seed_var[0], pooled_seed_var[1], pool_source
    elif k >= 2:  # the spread of the per-pair differences on these very images
        seed_var, seed_df, source = float(np.var(d, ddof=1)), k - 1.0, "measured"
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


def table_seed_variance(rows: Sequence[Row]) -> tuple[float, float] | None:
    """The variance of one pair's difference beyond the test images the pairs share (what training adds,
    with each run's own per-image errors), pooled over a comparison table, and its degrees of freedom.

    Per reference, the macro-F1 of each side (the reference and every row) in each replicate is fitted by
    side + replicate, the randomized-block two-way model, by least squares (a row missing a replicate is
    fine); the residual mean square is one side's variance, twice it a difference's. References' residual
    sums of squares and degrees of freedom add up. Assumes every side of a table varies alike from
    replicate to replicate (the classical pooled-error assumption). With one row it is the spread of the
    row's per-pair differences (k-1 degrees of freedom); a reference with four rows of 3 seeds gives 8.
    None when no side of the table has two replicates."""
    by_reference: dict[str, list[Row]] = {}
    for row in rows:
        by_reference.setdefault(row.reference, []).append(row)
    ss, df = 0.0, 0
    for group in by_reference.values():
        observed: dict[tuple[int, str], float] = {}  # (side: 0 the reference, i the i-th row; replicate)
        for i, row in enumerate(group, start=1):
            for p in row.pairs:
                f1 = macro_f1_batch(np.stack([p.y_true, p.y_true]), np.stack([p.pred_a, p.pred_b]), row.n_classes)
                observed.setdefault((0, p.replicate), float(f1[0]))
                observed[(i, p.replicate)] = float(f1[1])
        if not observed:
            continue
        sides = {side: n for n, side in enumerate(sorted({side for side, _ in observed}))}
        replicates = {r: len(sides) + n for n, r in enumerate(sorted({r for _, r in observed}))}
        design = np.zeros((len(observed), len(sides) + len(replicates)))
        for n, (side, replicate) in enumerate(observed):
            design[n, sides[side]] = design[n, replicates[replicate]] = 1.0
        values = np.fromiter(observed.values(), dtype=np.float64, count=len(observed))
        fitted = design @ np.linalg.lstsq(design, values, rcond=None)[0]
        ss += float(np.sum((values - fitted) ** 2))
        df += len(observed) - int(np.linalg.matrix_rank(design))
    return (2 * ss / df, float(df)) if df > 0 else None


def pool_seed_variance(estimates: Sequence[tuple[float, float] | None]) -> tuple[float, float] | None:
    """Independent estimates (variance, degrees of freedom) of the same seed variance (say, several tables'
    `table_seed_variance`), pooled: weighted by degrees of freedom, which add up. None: none to pool."""
    present = [e for e in estimates if e is not None and e[1] > 0]
    if not present:
        return None
    df = sum(e[1] for e in present)
    return sum(v * f for v, f in present) / df, df


def table_differences(
    rows: Sequence[Row],
    *,
    seeds: Sequence[int],
    table_pool: tuple[float, float] | None,
    run_pool: tuple[float, float] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> list[Difference | None]:
    """The report's verdicts on one comparison table: each row's difference (None: a row without paired
    predictions), its seed part pooled over the table (`table_pool`: this table's `table_seed_variance`),
    else over the report's tables (`run_pool`: `pool_seed_variance` of theirs), judged together (Holm over
    the table). `seeds`: each row's bootstrap seed."""
    pooled, source = (table_pool, "table") if table_pool is not None else (run_pool, "run")
    diffs: list[Difference | None] = [
        paired_difference(
            row.pairs, row.n_classes, resamples=resamples, seed=seed, pooled_seed_var=pooled, pool_source=source
        )
        if row.pairs
        else None
        for row, seed in zip(rows, seeds, strict=True)
    ]
    judge(diffs, min_effect=min_effect)
    return diffs


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
