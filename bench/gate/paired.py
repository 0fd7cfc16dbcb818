"""Same-machine A/B verdicts: a timing judged on per-round paired ratios, with three outcomes.

In an A/B gate (bench.tools.ab_gate) both revisions run on one machine, interleaved over R rounds, each
cell in a fresh process. The unit of the test is the round, not the batch: batches of one process share
its allocator state, thread placement and page cache, so they are not independent (pyperf's point), and a
test on pooled batches finds any level shift between two processes "significant". A round's paired value
is the log of head over base of the metric's per-process value (a median over that process's batches);
whatever slowed the machine during that round slows both sides of it alike and cancels in the ratio.

The interval is the Hodges–Lehmann estimate of the rounds' log-ratios with its exact Wilcoxon signed-rank
confidence interval: distribution-free (only symmetry about the true shift is assumed), robust to a round
spoilt by a burst of load, and with an exact coverage of at least the confidence asked for at any number
of rounds (a bootstrap percentile interval of a median undercovers at ten rounds). Fewer than six rounds
cannot give a 95% interval at all.

A gate that adds rounds while a timing is undecided looks at its intervals more than once, and each look
is another chance of a wrong verdict: at 95% per look over every round from 6 to 24, a change exactly at the
threshold was called a regression several times as often as the 2.5% a 95% interval allows
(docs/measurements-log.md, "The gate's looks, simulated"). So the gate looks only at a few rounds, each about
half as many again as the one before (`look_schedule`: 8, 12, 18 and 24 for 6 to 24 rounds), and each
look's interval has confidence 1 - 0.05/K over its K looks (Bonferroni: whatever the dependence between
looks, the chance of any wrong verdict stays within 5%). One look, when the rounds are fixed, is the plain
95% interval.

The verdict compares the whole interval with the threshold (a relative change in the metric's bad
direction): past it entirely, "regression"; entirely short of it, "pass"; straddling it, "inconclusive"
(more rounds would decide). A change that is not a regression is never called one because the machine was
busy, and a gate that cannot decide never says "pass". Plain data in, plain data out.

On a CPU the wall clock of a round stretches with whatever else runs: with three runnable processes on two
cores, one side may hold a core alone for a whole round while the other shares one, and a round's
wall-clock ratio moved 0.69-1.69 in an A/A pair while the CPU-time ratio stayed within 0.95-1.09
(docs/measurements-log.md). The CPU time a batch costs (the process's, every thread) is what load does not
inflate, so `settle_wall_clock` lets a cell's conclusive CPU-time verdict decide for its wall-clock timings
that the load left undecided: they stay "inconclusive" with the reason, and do not hold the gate up. A
wall-clock timing that *is* conclusive counts as it is (a regression fails the gate). What this cannot see on
a loaded machine is a change in waiting alone (the same CPU work, more wall time: lost parallelism, a sleep,
I/O) smaller than the load lets the wall clock resolve; `--strict-wall-clock` keeps such cells inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from bench.core.metric import HIGHER, Metric, Threshold

PASS, REGRESSION, INCONCLUSIVE = "pass", "regression", "inconclusive"
CONFIDENCE = 0.95


@lru_cache(maxsize=64)
def signed_rank_critical(n: int, confidence: float = CONFIDENCE) -> int | None:
    """The largest c with P(T <= c) <= (1 - confidence) / 2 under the null (T: Wilcoxon's signed-rank
    statistic of n untied values; exact, by counting subsets of ranks), or None when even c = 0 is too likely."""
    top = n * (n + 1) // 2
    ways = [1] + [0] * top  # ways[w]: subsets of ranks 1..n summing to w
    for rank in range(1, n + 1):
        for w in range(top, rank - 1, -1):
            ways[w] += ways[w - rank]
    total, tail, cumulative, critical = 2.0**n, (1 - confidence) / 2, 0, None
    for c in range(top + 1):
        cumulative += ways[c]
        if cumulative / total > tail:
            break
        critical = c
    return critical


def min_rounds(confidence: float = CONFIDENCE) -> int:
    """The fewest rounds whose signed-rank interval exists at this confidence (6 at 95%, 8 at 98.75%)."""
    n = 1
    while signed_rank_critical(n, confidence) is None:
        n += 1
    return n


def look_schedule(
    rounds: int, max_rounds: int, confidence: float = CONFIDENCE, growth: float = 1.5
) -> tuple[list[int], float]:
    """(the rounds at which a gate judges its timings, the confidence of each look's interval).

    The first look at `rounds` (or the fewest rounds the per-look confidence allows), then each about `growth`
    times the last, the last at `max_rounds` (a look only a little before it is dropped); with K looks, each at
    1 - (1 - confidence) / K. Rounds fixed (`rounds == max_rounds`): one look at the confidence asked."""
    if max_rounds <= rounds:
        return [max_rounds], confidence
    k = 1
    while True:
        per_look = 1 - (1 - confidence) / k
        first = max(rounds, min_rounds(per_look))
        if first >= max_rounds:  # no room for several looks at that confidence: one, at the end
            return [max_rounds], confidence
        looks = [first]
        while looks[-1] < max_rounds:
            last = looks[-1]
            step = max(last + 1, math.ceil(last * growth))
            # the end comes next when the next step would pass it or leave only a sliver before it
            looks.append(max_rounds if step >= max_rounds or max_rounds - step < (step - last) / 2 else step)
        if len(looks) <= k:
            return looks, per_look
        k += 1


def hodges_lehmann(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(estimate, low, high): the median of the Walsh averages of `values` and their exact signed-rank
    confidence interval; (estimate, -inf, inf) when too few values for the confidence."""
    x = [float(v) for v in values]
    if not x:
        raise ValueError("no values")
    walsh = sorted((x[i] + x[j]) / 2 for i in range(len(x)) for j in range(i, len(x)))
    m = len(walsh)
    estimate = (walsh[(m - 1) // 2] + walsh[m // 2]) / 2
    c = signed_rank_critical(len(x), confidence)
    if c is None:
        return estimate, -math.inf, math.inf
    return estimate, walsh[c], walsh[m - 1 - c]


def bad_log_bound(spec: Metric, threshold: Threshold, base: float) -> float:
    """The threshold as a log-ratio in the metric's bad direction (always > 0): a 5% slowdown of a
    throughput is log(1 / 0.95), of a latency log(1.05)."""
    rel = threshold.allowed(base) / abs(base) if base else 0.0
    if spec.direction == HIGHER:
        return math.inf if rel >= 1 else -math.log(1 - rel)
    return math.log1p(rel)


@dataclass
class RoundsVerdict:
    """One metric of one cell judged over the rounds."""

    cell_id: str
    label: str
    metric: str
    rounds: int
    base_median: float
    head_median: float
    ratio: float  # head over base, the Hodges-Lehmann estimate of the per-round ratios
    ratio_low: float
    ratio_high: float
    threshold: str
    verdict: str  # PASS, REGRESSION or INCONCLUSIVE
    improvement: bool = False
    note: str = ""
    cpu_time: bool = False  # a CPU-time metric (Metric.cpu_time)
    settled_by: str | None = None  # an undecided wall-clock timing the cell's CPU-time verdict decided for

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @property
    def undecided(self) -> bool:
        """Inconclusive and not settled: holds the gate at "inconclusive"."""
        return self.verdict == INCONCLUSIVE and self.settled_by is None


def withhold(verdicts: Sequence[RoundsVerdict], why: str) -> list[RoundsVerdict]:
    """The verdicts made inconclusive, with the reason: rounds judged at no planned look (a look the schedule did
    not count would be one more chance of a wrong verdict)."""
    for v in verdicts:
        v.verdict, v.improvement, v.settled_by = INCONCLUSIVE, False, None
        v.note = _join(v.note, why)
    return list(verdicts)


def settle_wall_clock(verdicts: Sequence[RoundsVerdict]) -> list[RoundsVerdict]:
    """Mark each inconclusive wall-clock timing of a cell whose CPU-time timing passed as settled by it (see the
    module's docstring); a CPU-time regression or an undecided CPU time settles nothing. Returns the verdicts."""
    passed = {v.cell_id: v.metric for v in verdicts if v.cpu_time and v.verdict == PASS}
    for v in verdicts:
        if not v.cpu_time and v.verdict == INCONCLUSIVE and v.cell_id in passed:
            v.settled_by = passed[v.cell_id]
            v.note = _join(v.note, f"the wall clock was not resolved under this load; {passed[v.cell_id]} decided")
    return list(verdicts)


def judge_rounds(
    spec: Metric,
    threshold: Threshold,
    base: Sequence[float],
    head: Sequence[float],
    *,
    cell_id: str = "",
    label: str = "",
    confidence: float = CONFIDENCE,
) -> RoundsVerdict:
    """Judge paired per-round values (base[i] and head[i] measured in round i) of one metric."""
    if len(base) != len(head) or not base:
        raise ValueError("judge_rounds needs one base and one head value per round")
    pairs = [(b, h) for b, h in zip(base, head) if b > 0 and h > 0]
    logs = [math.log(h / b) for b, h in pairs]
    base_median = _median([b for b, _ in pairs]) if pairs else math.nan
    head_median = _median([h for _, h in pairs]) if pairs else math.nan
    out = RoundsVerdict(
        cell_id=cell_id,
        label=label,
        metric=spec.path,
        rounds=len(pairs),
        base_median=base_median,
        head_median=head_median,
        ratio=math.nan,
        ratio_low=math.nan,
        ratio_high=math.nan,
        threshold=str(threshold),
        verdict=INCONCLUSIVE,
        cpu_time=spec.cpu_time,
    )
    if len(pairs) < len(base):
        out.note = f"{len(base) - len(pairs)} round(s) without a positive value on both sides"
    if not pairs:
        return out
    est, low, high = hodges_lehmann(logs, confidence)
    out.ratio, out.ratio_low, out.ratio_high = math.exp(est), _exp(low), _exp(high)
    if threshold.off:
        out.verdict, out.note = PASS, "not judged (threshold off)"
        return out
    bound = bad_log_bound(spec, threshold, base_median)
    # the log-ratio in the bad direction: positive is worse
    worse_low, worse_high = (-high, -low) if spec.direction == HIGHER else (low, high)
    if not math.isfinite(worse_low) or not math.isfinite(worse_high):
        out.note = _join(
            out.note,
            f"{len(pairs)} rounds cannot give a {confidence * 100:.4g}% interval ({min_rounds(confidence)} at least)",
        )
    elif worse_low > bound:
        out.verdict = REGRESSION
    elif worse_high < bound:
        out.verdict = PASS
        out.improvement = worse_high < -bound
    else:
        out.note = _join(out.note, "the interval straddles the threshold: more rounds would decide")
    return out


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2


def _exp(value: float) -> float:
    return math.exp(value) if math.isfinite(value) else (math.inf if value > 0 else 0.0)


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b
