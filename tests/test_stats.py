"""Statistics on tiny hand-made samples, exact numbers (as pytest-benchmark's tests do)."""

import numpy as np
import pytest

from bench.core.stats import Stats, percentile


def test_summary_exact():
    st = Stats.of([4.0, 1.0, 3.0, 2.0, 10.0])
    assert st.n == 5 and st.total == 20.0 and st.mean == 4.0
    assert st.median == 3.0 and st.min == 1.0 and st.max == 10.0
    assert st.stddev == pytest.approx(3.5355339, rel=1e-7)  # sqrt(50/4)
    assert st.pct(90) == pytest.approx(7.6)  # 4 + 0.6 * (10 - 4)
    assert st.iqr == 2.0  # 4 - 2


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy(q):
    data = sorted([0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.11])
    assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_single_sample():
    st = Stats.of([2.5])
    assert st.stddev == 0.0 and st.pct(99) == 2.5 and st.median == 2.5


def test_errors():
    with pytest.raises(ValueError):
        Stats.of([])
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_seed_aggregate_mean_std_ci_exact():
    from bench.store.aggregate import mean_std_ci

    out = mean_std_ci([0.5, 0.6, 0.7])
    assert out["n"] == 3 and out["mean"] == pytest.approx(0.6) and out["std"] == pytest.approx(0.1)
    # t(0.975, 2) = 4.302653: half-width 4.302653 * 0.1 / sqrt(3) = 0.2484138
    assert out["ci_low"] == pytest.approx(0.6 - 0.2484138, abs=1e-6)
    assert out["ci_high"] == pytest.approx(0.6 + 0.2484138, abs=1e-6)
    assert mean_std_ci([0.4])["ci_low"] is None
