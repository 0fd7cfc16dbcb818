"""Regression checks between a committed baseline and a current run, cells matched by id.

Each metric has a direction (higher is better, lower is better, or exact) and a threshold, relative
("10%") and/or absolute ("0.01"), parsed from short strings as pytest-benchmark's `--benchmark-compare-fail`
does ("speed.throughput_img_s:10%"). Thresholds come from the baseline's side (its suite's `regression:`
section) or the command line, never from the run under test, so a change cannot loosen its own gate.

The unit of a timing is the run (a process), not the batch: batches of one process are not independent,
and a test on pooled batches calls any level shift between two processes significant. A baseline saved from
several runs carries their spread: a metric's baseline value is the median over those runs and its allowed
change is at least BETWEEN_RUN_FACTOR times the largest deviation from that median seen among them.

This mode is for what does not depend on the machine (params, MACs) and for reruns on the same hardware
key; timings on a shared or different machine are judged by the same-machine A/B gate (bench.gate.paired,
`bench gate`). Whatever this comparison cannot judge — other hardware, a busy machine, a metric the
baseline has and the current run lacks, a cell that was ok and is now skipped — is collected as a reason
for an "inconclusive" verdict, never passed over: the gate does not fail open.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.core.metric import EXACT, HIGHER, Metric, Threshold
from bench.core.stats import Stats
from bench.measure.catalogue import (
    MEMORY_ADDED,
    PEAK_MEMORY,
    REFERENCE_SAMPLES,
    SPEED_BATCH_SIZE,
    gated,
    memory_headline,
)

# Across machines training drifts (docs/measurements-log.md has the figures): the accuracy metrics are then
# judged at their catalogue's `other_hardware_threshold`, unless the suite allows more.
OTHER_HARDWARE_NOTE = "other hardware: training reproduces exactly only on the same machine, so judged coarsely"
# The machine-busy guard. Every speed cell times a fixed reference matmul beside its batches. When, in
# the current run, that reference ran this much slower than in the baseline (median over median) or
# its own repeats spread this widely (interquartile range over median), the machine was shared while
# the cell was timed: another process stalls one of the model's threads, which hurts a multi-threaded
# model far more than the matmul, so even latency_vs_reference moved 8x-16x in such reruns (nightly
# reruns on the 2-core machine; a quiet machine stays within 1.3x and 0.4). Those timings cannot be judged:
# the comparison is then inconclusive (never a pass), and says so; every other metric is judged as usual.
BUSY_REFERENCE_SLOWDOWN = 1.5
BUSY_REFERENCE_IQR = 0.5
# the largest of n observed deviations underestimates what the next run may show; twice it is the margin
BETWEEN_RUN_FACTOR = 2.0


@dataclass
class Finding:
    """One metric of one cell compared."""

    cell_id: str
    label: str
    metric: str
    baseline: float
    current: float
    change: float  # current - baseline
    relative: float | None
    allowed: float  # the change allowed in the bad direction (threshold, widened by noise for timings)
    threshold: str
    regression: bool
    improvement: bool
    note: str = ""
    judged: bool = True  # False: reported, not judged (the reason is in `note` and the comparison's `inconclusive`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    findings: list[Finding] = field(default_factory=list)
    new_cells: list[str] = field(default_factory=list)  # in current only
    missing_cells: list[str] = field(default_factory=list)  # in baseline only
    failed_cells: list[dict[str, str]] = field(default_factory=list)  # failed in current (ok in baseline)
    skipped_metrics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)  # why some part could not be judged

    @property
    def verdict(self) -> str:
        """regression (exit 1) before inconclusive (exit 3) before pass (exit 0)."""
        if self.regressed:
            return "regression"
        return "inconclusive" if self.inconclusive else "pass"

    def cell_notes(self) -> list[tuple[str, str, str]]:
        """(what, cell id, detail) for each cell that was not compared metric by metric: newly failed,
        missing in the current run, new in it."""
        return (
            [("newly failed", c["id"], f"{c['label']}: {c['reason']}") for c in self.failed_cells]
            + [("missing in current", cid, "") for cid in self.missing_cells]
            + [("new in current", cid, "") for cid in self.new_cells]
        )

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions or self.failed_cells or self.missing_cells)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "regressed": self.regressed,
            "inconclusive": self.inconclusive,
            "regressions": [f.to_dict() for f in self.regressions],
            "findings": [f.to_dict() for f in self.findings],
            "new_cells": self.new_cells,
            "missing_cells": self.missing_cells,
            "failed_cells": self.failed_cells,
            "skipped_metrics": self.skipped_metrics,
            "warnings": self.warnings,
        }


def busy_reason(baseline_refs: list[float], current_refs: list[float]) -> str | None:
    """Why a cell's current timings cannot be judged, from the reference workload's samples (seconds)
    timed beside them in the baseline runs and now; None when the machine looked as quiet as before."""
    if len(baseline_refs) < 3 or len(current_refs) < 3:
        return None
    base, cur = Stats.of(baseline_refs), Stats.of(current_refs)
    slowdown = cur.median / base.median if base.median > 0 else 1.0
    iqr = (cur.pct(75) - cur.pct(25)) / cur.median if cur.median > 0 else 0.0
    if slowdown > BUSY_REFERENCE_SLOWDOWN:
        return f"machine busy: the reference workload ran {slowdown:.1f}x slower than in the baseline"
    if iqr > BUSY_REFERENCE_IQR:
        return (
            f"machine busy: the reference workload's repeats spread {iqr * 100:.0f}% (interquartile range over median)"
        )
    return None


def _reference_samples(result) -> list[float]:
    return list(REFERENCE_SAMPLES.of(result) or [])


def between_run_spread(values: list[float]) -> float:
    """The largest relative deviation from the median among one metric's values in several runs."""
    if len(values) < 2:
        return 0.0
    med = Stats.of(values).median
    return max(abs(v - med) for v in values) / abs(med) if med else 0.0


def judge(
    spec: Metric,
    threshold: Threshold,
    base: float,
    cur: float,
    *,
    between_runs: tuple[float, int] | None = None,
) -> tuple[bool, bool, float, str]:
    """(regression, improvement, allowed change, note) for one metric's per-run values.

    `between_runs` = (relative spread, number of runs) of the baseline's value over several runs."""
    change = cur - base
    if spec.direction == EXACT or threshold.exact:
        return change != 0, False, 0.0, "must be identical" if change else ""
    worse = -change if spec.direction == HIGHER else change
    if threshold.off:
        return False, False, math.inf, "not judged (threshold off)"
    allowed = threshold.allowed(base)
    note = ""
    if between_runs and between_runs[0] > 0:
        spread, n = between_runs
        widened = BETWEEN_RUN_FACTOR * spread * abs(base)
        if widened > allowed:
            note = (
                f"threshold widened to {BETWEEN_RUN_FACTOR:g}x the spread of {n} baseline runs (±{spread * 100:.1f}%)"
            )
            allowed = widened
    regression = worse > allowed
    improvement = -worse > allowed and not regression
    return regression, improvement, allowed, note


def memory_judged(spec: Metric, result) -> bool:
    """On a CPU the peak is the process's RSS (mostly torch itself): the memory the cell added is judged
    and the RSS kept as context; on a GPU the peak allocated is judged."""
    if spec in (PEAK_MEMORY, MEMORY_ADDED):
        return spec == memory_headline(result)
    return True


def compare_results(
    baseline: Iterable,
    current: Iterable,
    thresholds: dict[str, Threshold],
    *,
    hardware_independent_only: bool = False,
    baseline_repeats: Iterable[Iterable] = (),
) -> Comparison:
    """Compare two runs' CellResults by cell id.

    `baseline_repeats`: further runs of the baseline (CellResult lists); where a cell finished in them
    too, its baseline value is the median over all and the threshold widens to their spread."""
    repeats = [{r.id: r for r in run if r.status == "ok"} for run in baseline_repeats]
    base = {r.id: r for r in baseline}
    cur = {r.id: r for r in current}
    out = Comparison(new_cells=sorted(set(cur) - set(base)), missing_cells=sorted(set(base) - set(cur)))
    if hardware_independent_only:
        out.skipped_metrics = [k for k, m in gated().items() if m.hardware_dependent]
    for cid in [i for i in cur if i in base]:
        a, b = base[cid], cur[cid]
        if b.status == "failed" and a.status != "failed":
            out.failed_cells.append({"id": cid, "label": b.cell.label(), "reason": b.reason or ""})
            continue
        if a.status == "ok" and b.status != "ok":
            out.inconclusive.append(f"cell {cid} ({b.cell.label()}) was ok in the baseline and is {b.status} now")
            continue
        bs_a, bs_b = SPEED_BATCH_SIZE.of(a), SPEED_BATCH_SIZE.of(b)
        if bs_a is not None and bs_b is not None and bs_a != bs_b:  # e.g. an opted-in fallback after out of memory
            why = b.measurements["speed"].get("fallback") or a.measurements["speed"].get("fallback")
            out.warnings.append(
                f"cell {cid} ({b.cell.label()}): speed ran at batch {bs_a} in the baseline and {bs_b} now"
                + (f" ({why})" if why else "")
                + ": its timings are not like for like"
            )
        busy = None
        if not hardware_independent_only:
            busy = busy_reason(
                [x for r in [a, *(rep[cid] for rep in repeats if cid in rep)] for x in _reference_samples(r)],
                _reference_samples(b),
            )
        if busy:
            out.inconclusive.append(
                f"cell {cid} ({b.cell.label()}): {busy}; its timings cannot be judged (run again on a quiet "
                "machine, or gate with `bench gate`, which measures both sides on one machine)"
            )
        for key, spec in gated().items():
            if key in out.skipped_metrics or key not in thresholds or not memory_judged(spec, a):
                continue
            va, vb = spec.number(a), spec.number(b)
            if va is None:
                continue
            if vb is None:
                out.inconclusive.append(f"cell {cid} ({b.cell.label()}): {key} is in the baseline and missing now")
                continue
            runs = [a] + [rep[cid] for rep in repeats if cid in rep and spec.number(rep[cid]) is not None]
            between = None
            if len(runs) > 1 and spec.direction != EXACT:
                values = [v for r in runs if (v := spec.number(r)) is not None]  # all set: `runs` was filtered
                va = Stats.of(values).median
                between = (between_run_spread(values), len(runs))
            threshold = thresholds[key]
            # reproducible on one machine only
            other_text = spec.other_hardware_threshold if hardware_independent_only else None
            coarse = other_text is not None
            if other_text is not None:
                other = Threshold.parse(other_text)
                threshold = other if other.allowed(va) > threshold.allowed(va) else threshold
            regression, improvement, allowed, note = judge(spec, threshold, va, vb, between_runs=between)
            if coarse:
                note = OTHER_HARDWARE_NOTE + (f"; {note}" if note else "")
            judged = True
            if busy and spec.timing:
                regression = improvement = judged = False
                note = f"not judged: {busy}"
            out.findings.append(
                Finding(
                    cell_id=cid,
                    label=b.cell.label(),
                    metric=key,
                    baseline=float(va),
                    current=float(vb),
                    change=float(vb) - float(va),
                    relative=(float(vb) - float(va)) / abs(va) if va else None,
                    allowed=allowed,
                    threshold=str(threshold),
                    regression=regression,
                    improvement=improvement,
                    note=note,
                    judged=judged,
                )
            )
    return out


# what must match for timings to be comparable: the machine, the thread count, the allocator (bench.platform.
# allocator) and the libraries that compute
HARDWARE_KEY = ("cpu_model", "cpu_cores_usable", "device", "gpu_name", "torch", "timm", "torch_threads")


def hardware_key(env: dict[str, Any]) -> dict[str, Any]:
    """What must match for timings to be comparable."""
    key = {k: env.get(k) for k in HARDWARE_KEY}
    allocator = env.get("allocator") or "default"  # runs before the setting existed measured glibc as is
    key["allocator"] = allocator.get("setting", "default") if isinstance(allocator, dict) else allocator
    return key


def hardware_mismatch(base_env: dict[str, Any], cur_env: dict[str, Any]) -> list[str]:
    a, b = hardware_key(base_env), hardware_key(cur_env)
    return [f"{k}: baseline {a[k]!r}, current {b[k]!r}" for k in a if a[k] != b[k]]


def markdown_summary(comp: Comparison, baseline: str, current: str) -> str:
    """A GitHub-flavoured summary for a CI job summary."""
    lines = [f"### bench compare: {current} against {baseline}", ""]
    status = {"regression": "**REGRESSION**", "inconclusive": "**INCONCLUSIVE**", "pass": "no regression"}[comp.verdict]
    lines.append(
        f"{status}: {len(comp.regressions)} metric regressions, {len(comp.failed_cells)} newly failed cells, "
        f"{len(comp.missing_cells)} missing, {len(comp.new_cells)} new; {len(comp.findings)} metrics compared."
    )
    lines.append("")
    lines += [f"> cannot judge: {why}" for why in comp.inconclusive]
    if comp.inconclusive:
        lines.append("")
    for w in comp.warnings:
        lines.append(f"> warning: {w}")
    if comp.warnings:
        lines.append("")
    rows = [f for f in comp.findings if f.regression or f.improvement]
    if rows:
        lines += [
            "| cell | metric | baseline | current | change | allowed | verdict |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for f in rows:
            rel = f"{f.relative * 100:+.1f}%" if f.relative is not None else f"{f.change:+g}"
            verdict = "regression" if f.regression else "improvement"
            lines.append(
                f"| `{f.cell_id}` {f.label} | {f.metric} | {f.baseline:.4g} | {f.current:.4g} | {rel} | {f.allowed:.3g} | {verdict} |"
            )
        lines.append("")
    lines += [f"- {what}: `{cid}`" + (f" {detail}" if detail else "") for what, cid, detail in comp.cell_notes()]
    return "\n".join(lines) + "\n"
