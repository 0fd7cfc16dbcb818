"""The statistics behind the report's verdicts: macro-F1 by bincounts equals scikit-learn's (one definition),
the paired interval's parts on hand-made cases, the seed variance pooled over a table, Holm's adjustment,
and a calibration on simulated classifiers: the interval covers a zero difference at its level and finds a
real one, on tables judged as the report judges them (`table_differences`).

The simulator (`_table`): 10 classes; each test image has a difficulty shared by every classifier; a
classifier of quality q gets an image of difficulty z right with probability Phi(q - z), independently per
image, and otherwise predicts a random wrong class. Each seed's classifier draws its own quality around
its recipe's (sd 0.05 on that scale, about 0.01 macro-F1) and its own per-image errors, so seeds differ
both in how good they are and in which images they get wrong. The 3-seed case is what the old method
(different bootstrap indices per seed, averaged) got wrong: its interval shrank by about sqrt(3).
"""

from __future__ import annotations

import numpy as np
import pytest
from cell_factory import make_cell
from scipy.stats import norm
from sklearn.metrics import f1_score

from bench.core.result import CellResult
from bench.measure.train.metrics import macro_f1
from bench.report.data import RunData
from bench.report.noise import (
    Pair,
    Row,
    bootstrap_indices,
    holm,
    judge,
    macro_f1_batch,
    paired_difference,
    percentile_interval,
    pool_seed_variance,
    table_differences,
    table_seed_variance,
)
from bench.report.plots import Point, frontier
from bench.report.sections import _judge_tables
from bench.store.run_store import RunStore

C = 10


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_is_one_definition_everywhere(seed):
    """The report's bincount macro-F1 and the headline's (bench.measure.train.metrics) are scikit-learn's
    over every class with zero_division=0, also when a class is never true or never predicted."""
    rng = np.random.default_rng(seed)
    k = 7
    y_true = rng.integers(0, k - 1, size=200)  # class 6 never true
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, k - 1, size=200))  # and never predicted
    expected = f1_score(y_true, y_pred, labels=list(range(k)), average="macro", zero_division=0)
    assert macro_f1_batch(y_true, y_pred, k)[0] == pytest.approx(expected, abs=1e-12)
    assert macro_f1(y_true, y_pred, k) == expected


def test_bootstrap_rows_equal_sklearn_on_the_same_resamples():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, size=60)
    y_pred = np.where(rng.random(60) < 0.7, y_true, rng.integers(0, 5, size=60))
    idx = bootstrap_indices(60, resamples=20, seed=3)
    batch = macro_f1_batch(y_true[idx], y_pred[idx], 5)
    for row, ix in zip(batch, idx):
        expected = f1_score(y_true[ix], y_pred[ix], labels=list(range(5)), average="macro", zero_division=0)
        assert row == pytest.approx(expected, abs=1e-12)


def test_hand_computed_macro_f1():
    # class 0: tp=1 fp=1 fn=1 -> F1 0.5; class 1: tp=1 fp=1 fn=0 -> 2/3; class 2: tp=0 fp=0 fn=1 -> 0
    assert macro_f1_batch([0, 0, 1, 2], [0, 1, 1, 0], 3)[0] == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_identical_predictions_are_negligible_and_a_clear_gain_is_real():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=500)
    weak = np.where(rng.random(500) < 0.4, y, rng.integers(0, 5, size=500))
    strong = np.where(rng.random(500) < 0.9, y, rng.integers(0, 5, size=500))
    same = paired_difference([Pair("s", y, weak, weak, "0")], 5, resamples=200)
    big = paired_difference([Pair("s", y, weak, strong, "0")], 5, resamples=200, pooled_seed_var=(1e-4, 10))
    unknown = paired_difference([Pair("s", y, weak, strong, "0")], 5, resamples=200)
    judge([same, big, unknown])
    assert same.delta == 0 and same.se == 0 and same.verdict == "negligible"
    assert big.verdict == "real" and big.ci_low > 0.2 and big.seed_var_source == "pooled"
    # one seed and no seed noise to pool: the image interval alone cannot carry a verdict
    assert unknown.seed_var_source == "none" and unknown.verdict == "inconclusive"


def test_seeds_add_their_spread_to_the_image_noise():
    """Three seeds whose differences disagree: the interval's variance is the images' part (one bootstrap
    of the mean difference, the same indices for every seed and both sides) plus the seeds' spread over 3,
    with Welch-Satterthwaite degrees of freedom; the images alone would make it far narrower."""
    rng = np.random.default_rng(2)
    y, z = _images(rng, 1000)
    pairs = [
        Pair("s", y, _preds(rng, y, z, MU), _preds(rng, y, z, MU + shift), str(j))
        for j, shift in enumerate((-0.3, 0.0, 0.3))
    ]
    d = paired_difference(pairs, C, resamples=400, seed=5)
    per_pair = [macro_f1_batch(y, p.pred_b, C)[0] - macro_f1_batch(y, p.pred_a, C)[0] for p in pairs]
    idx = bootstrap_indices(len(y), 400, seed=5)  # the indices paired_difference draws for the one split
    boot = [macro_f1_batch(y[idx], p.pred_b[idx], C) - macro_f1_batch(y[idx], p.pred_a[idx], C) for p in pairs]
    assert d.delta == pytest.approx(np.mean(per_pair)) and d.seed_var == pytest.approx(np.var(per_pair, ddof=1))
    assert d.image_var == pytest.approx(np.var(np.mean(boot, axis=0), ddof=1))
    assert d.se**2 == pytest.approx(d.image_var + d.seed_var / 3)
    assert d.seed_var > 10 * d.image_var and 2 <= d.df < 3 and d.seed_var_source == "measured"
    assert d.ci_high - d.ci_low > 4 * 1.96 * np.sqrt(d.image_var)


def test_table_seed_variance_is_the_two_way_residual():
    """Pooled over a table: with one row, the spread of its per-pair differences (k - 1 df); with a
    reference and four rows of 3 seeds, the randomized-block residual by hand (double centring), 8 df; a
    row with one seed adds nothing (its only value fixes its own mean); two references' tables pool."""
    rng = np.random.default_rng(3)
    y, z = _images(rng, 500)
    ref = [_preds(rng, y, z, MU + 0.1 * rng.normal()) for _ in range(3)]
    sides = [[_preds(rng, y, z, MU + 0.1 * rng.normal()) for _ in range(3)] for _ in range(4)]
    rows = [Row("r", [Pair("s", y, ref[j], side[j], str(j)) for j in range(3)], C) for side in sides]
    f1 = np.array([[macro_f1_batch(y, p, C)[0] for p in preds] for preds in [ref, *sides]])
    d = f1[1] - f1[0]
    assert table_seed_variance(rows[:1]) == pytest.approx((np.var(d, ddof=1), 2.0))
    residual = f1 - f1.mean(axis=1, keepdims=True) - f1.mean(axis=0, keepdims=True) + f1.mean()
    by_hand = 2 * np.sum(residual**2) / 8
    assert table_seed_variance(rows) == pytest.approx((by_hand, 8.0))
    lone = Row("r", [Pair("s", y, ref[0], _preds(rng, y, z, MU), "0")], C)
    assert table_seed_variance([*rows, lone]) == pytest.approx((by_hand, 8.0))
    other = [Row("q", [Pair("s", y, side[j], ref[j], str(j)) for j in range(3)], C) for side in sides[:1]]
    pooled = table_seed_variance([*rows, *other])
    assert pooled == pytest.approx(((by_hand * 8 + np.var(d, ddof=1) * 2) / 10, 10.0))
    assert table_seed_variance([lone]) is None
    assert pool_seed_variance([None, (1.0, 2.0), (4.0, 6.0)]) == pytest.approx((3.25, 8.0))


def test_holm_adjustment_exact():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_percentile_interval_exact():
    assert percentile_interval(np.arange(101, dtype=float)) == pytest.approx((2.5, 97.5), abs=1e-12)


# -- calibration on simulated classifiers ------------------------------------------------------------------

SIMULATIONS = 1000
MU = 1.3  # about 0.82 macro-F1
ROWS = 4  # recipes against the reference in a simulated table (the shipped suites: `none` and four strategies)


def _images(rng, n):
    return rng.integers(0, C, n), rng.normal(0, 1, n)


def _preds(rng, y, z, quality):
    right = rng.random(len(y)) < norm.cdf(quality - z)
    return np.where(right, y, (y + rng.integers(1, C, size=len(y))) % C)


def _table(rng, n, k, mus, sd_seed=0.05):
    """One comparison table as the report builds it: a reference recipe (quality mus[0]) and a row for each
    other recipe, k seeds each, all on one test set of n images; the reference's seeds are shared by every
    row. Each seed's classifier draws its own quality around its recipe's and its own per-image errors."""
    y, z = _images(rng, n)

    def seeds(mu):
        return [_preds(rng, y, z, mu + sd_seed * rng.normal()) for _ in range(k)]

    ref = seeds(mus[0])
    return [Row("reference", [Pair("s", y, ref[j], b[j], str(j)) for j in range(k)], C) for b in map(seeds, mus[1:])]


def _judged(rows, seed, run_pool=None):
    """The report's verdicts on one table (bench.report.sections._judge_tables): seed variance pooled over
    the table, else over the run's other tables; Holm over the table."""
    estimate = table_seed_variance(rows)
    diffs = table_differences(rows, seeds=[seed] * len(rows), table_pool=estimate, run_pool=run_pool, resamples=100)
    return diffs, estimate


def _true_f1(mu, n=400_000):
    rng = np.random.default_rng(123)
    y, z = _images(rng, n)
    return macro_f1_batch(y, _preds(rng, y, z, mu), C)[0]


def _mu_for(difference):
    """The recipe quality whose macro-F1 is `difference` above MU's (bisection on the simulator)."""
    base, lo, hi = _true_f1(MU), MU, MU + 1.0
    for _ in range(25):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _true_f1(mid) - base < difference else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.slow
def test_interval_coverage_and_power_on_simulated_classifiers(record_property):
    """1,000 simulated comparison tables of each kind (fixed seed), each a reference and four recipes against
    it, 3 seeds each (a shipped suite's strategy table), judged as the report judges them. A true difference
    of 0 (1,000 test images): every row's 95% interval covers 0 in at least 93%; so does a one-row table
    (the nightly's), whose seed part has 2 degrees of freedom, and a one-seed comparison, its seed noise
    pooled from the run's previous table. A true difference of 0.05 on 2,000 test images in one row, the
    three others 0: that row is called "real" (Holm over the four) in at least 90%, and the others' intervals
    still cover 0 in at least 93%."""
    rng = np.random.default_rng(20261201)
    cover3 = cover_row = cover1 = cover_beside = real = 0
    previous = None
    for i in range(SIMULATIONS):
        diffs, estimate = _judged(_table(rng, 1000, 3, [MU] * (ROWS + 1)), seed=i)
        cover3 += sum(d.ci_low <= 0 <= d.ci_high for d in diffs)
        (lone,), _ = _judged(_table(rng, 1000, 3, [MU, MU]), seed=i)
        cover_row += lone.ci_low <= 0 <= lone.ci_high
        run_pool = pool_seed_variance([previous])
        (one,), _ = _judged(_table(rng, 1000, 1, [MU, MU]), seed=i, run_pool=run_pool)
        assert one.seed_var_source == ("run" if run_pool else "none")
        cover1 += run_pool is None or one.ci_low <= 0 <= one.ci_high
        previous = estimate
    mu_b = _mu_for(0.05)
    for i in range(SIMULATIONS):
        diffs, _ = _judged(_table(rng, 2000, 3, [MU, mu_b] + [MU] * (ROWS - 1)), seed=i)
        real += diffs[0].verdict == "real"
        cover_beside += sum(d.ci_low <= 0 <= d.ci_high for d in diffs[1:])
    rates = {
        "coverage_3_seeds": cover3 / (SIMULATIONS * ROWS),
        "coverage_3_seeds_one_row": cover_row / SIMULATIONS,
        "coverage_1_seed": cover1 / SIMULATIONS,
        "coverage_3_seeds_beside_a_real_difference": cover_beside / (SIMULATIONS * (ROWS - 1)),
        "real_at_0.05_3_seeds": real / SIMULATIONS,
    }
    for name, rate in rates.items():
        record_property(name, rate)
    print(rates)
    assert all(rate >= 0.93 for name, rate in rates.items() if name.startswith("coverage")), rates
    assert rates["real_at_0.05_3_seeds"] >= 0.90, rates


def test_frontier_on_hand_made_points():
    pts = [Point("a", "f", 1, 0.5), Point("b", "f", 2, 0.4), Point("c", "f", 3, 0.8), Point("d", "f", 4, 0.7)]
    assert [p.label for p in frontier(pts, higher_x_better=False)] == ["a", "c"]
    assert [p.label for p in frontier(pts, higher_x_better=True)] == ["d", "c"]


def test_the_report_pools_seed_noise_over_each_table(tmp_path):
    """The report's plumbing (bench.report.sections._judge_tables) on saved prediction files: a reference
    and two strategies, 3 seeds each, pairs matched by seed; each row's seed part is the table's two-way
    estimate (4 degrees of freedom), not its own three seeds' (2); a table with one seed per side takes the
    estimate pooled over the run's tables."""
    rng = np.random.default_rng(4)
    y, z = _images(rng, 300)
    store = RunStore(tmp_path)

    def saved(strategy, seed, resolution=64):
        cell = make_cell(strategy=strategy, seed=seed, resolution=resolution)
        pred = _preds(rng, y, z, MU + 0.2 * rng.normal())
        folder = store.artifact_dir(cell.id)
        folder.mkdir(parents=True)
        lines = ["key,true_index,pred_index", *(f"img{i},{t},{p}" for i, (t, p) in enumerate(zip(y, pred)))]
        (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
        train = {"predictions_file": "predictions.csv", "label_map": [str(c) for c in range(C)]}
        return CellResult(cell, "ok", measurements={"train": train}), pred

    cells = {(s, seed): saved(s, seed) for s in ("none", "focal", "both") for seed in range(3)}
    lone = {s: saved(s, 0, resolution=32) for s in ("none", "focal")}
    run = RunData(tmp_path, [r for r, _ in [*cells.values(), *lone.values()]])
    ref = [cells["none", seed][0] for seed in range(3)]
    rows = [{}, {}]
    table = [(row, ref, [cells[s, seed][0] for seed in range(3)]) for row, s in zip(rows, ("focal", "both"))]
    single = {}
    _judge_tables(run, [table, [(single, [lone["none"][0]], [lone["focal"][0]])]])

    expected = table_seed_variance(
        [
            Row("r", [Pair("x", y, cells["none", j][1], cells[s, j][1], str(j)) for j in range(3)], C)
            for s in ("focal", "both")
        ]
    )
    assert expected is not None and expected[1] == 4.0
    for row, s in zip(rows, ("focal", "both")):
        d = row["delta"]
        own = [macro_f1(y, cells[s, j][1], C) - macro_f1(y, cells["none", j][1], C) for j in range(3)]
        assert d["delta"] == pytest.approx(np.mean(own)) and d["seed_var_source"] == "table"
        assert (d["seed_var"], d["seed_var_df"]) == pytest.approx(expected) and d["seed_var"] != pytest.approx(
            np.var(own, ddof=1)
        )
    assert single["delta"]["seed_var_source"] == "run" and single["delta"]["seed_var_df"] == 4.0
