"""The A/B gate's verdict as table rows and as Markdown (a CI job summary)."""

from __future__ import annotations

import math

from bench.core.numbers import format_number
from bench.gate.paired import INCONCLUSIVE, REGRESSION
from bench.tools.ab_gate import GateResult


def _ratio(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "—"
    interval = f"[{low:.3f}, {high:.3f}]" if math.isfinite(low) and math.isfinite(high) else "[no interval]"
    return f"{value:.3f} {interval}"


def gate_rows(result: GateResult) -> list[tuple[str, ...]]:
    """cell, metric, base, head, ratio (interval), threshold, verdict, note: timings first, then the rest."""
    rows: list[tuple[str, ...]] = [
        (
            f"{v.cell_id} {v.label}",
            v.metric,
            format_number(v.base_median),
            format_number(v.head_median),
            _ratio(v.ratio, v.ratio_low, v.ratio_high),
            v.threshold,
            v.verdict + (" (better)" if v.improvement else "") + (" (settled)" if v.settled_by else ""),
            v.note,
        )
        for v in result.timings
    ]
    rows += [
        (
            f"{v.cell_id} {v.label}",
            v.metric,
            format_number(v.base),
            format_number(v.head),
            _ratio(v.head / v.base, math.nan, math.nan) if v.base else "—",
            v.threshold,
            v.verdict,
            v.note,
        )
        for v in result.once
    ]
    rows += [
        (f"{c['id']} {c['label']}", "status", "ok", "failed", "—", "—", REGRESSION, c["reason"])
        for c in result.failed_cells
    ]
    return rows


def gate_markdown(result: GateResult) -> str:
    verdict = result.verdict
    title = {"pass": "no regression", REGRESSION: "**REGRESSION**", INCONCLUSIVE: "**INCONCLUSIVE**"}[verdict]
    lines = [
        f"### bench gate: {result.head['ref']} ({(result.head['commit'] or '')[:10]}) against "
        f"{result.base['ref']} ({(result.base['commit'] or '')[:10]})",
        "",
        f"{title}: {result.looks_said} (ABBA, each side's cells in fresh processes on this machine), "
        f"{len(result.timings)} timings judged on per-round ratios, {len(result.once)} other metrics.",
        "",
    ]
    lines += [f"> cannot judge: {why}" for why in result.to_dict()["inconclusive"]]
    lines += [""] if verdict == INCONCLUSIVE else []
    lines += [
        f"| cell | metric | base | head | ratio [{result.interval}] | threshold | verdict | note |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in gate_rows(result)]
    lines += [""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
