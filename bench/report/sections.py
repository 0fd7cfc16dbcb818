"""Report sections: a registry filled by a decorator, one builder per section.

A builder takes the report's context (the runs, read from the store) and returns the plain data its
templates need, or None when its data is absent, so that a section only appears when it has something
to show. Each section `NAME` renders with `report_templates/sections/NAME.html.j2` and `NAME.md.j2`; a
test renders every registered section, so a new one is tested for free.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.core import axes as axis_paths
from bench.core.metric import EXACT, HIGHER, LOWER, Metric
from bench.core.result import SYNTHETIC_NOTICE, CellResult, evaluated_on, synthetic_datasets
from bench.measure.catalogue import (
    ACCURACY,
    BEST_EPOCH,
    COMPILE_FIRST_CALL,
    ENERGY_PER_IMAGE,
    FLOPS,
    FLOPS_BATCH_SIZE,
    GMACS,
    GRAPH_BREAKS,
    INFERENCE_MFU,
    LATENCY_MEDIAN,
    MACRO_F1,
    MACS,
    PARAMS,
    PEAK_MEMORY,
    RECOMPILATIONS,
    SPEED_BATCH_SIZE,
    THROUGHPUT,
    TRAIN_FLOPS_PER_IMAGE,
    TRAIN_THROUGHPUT,
    TRAINING_MFU,
    memory_headline,
)
from bench.measure.published import efficientnet_paper_rows, paper_figure
from bench.platform.machine import warnings as machine_warnings
from bench.report import plots
from bench.report.data import RunData
from bench.report.datapath import data_path_data
from bench.report.efficiency import efficiency_data
from bench.report.noise import (
    Difference,
    Pair,
    Row,
    bootstrap_macro_f1,
    percentile_interval,
    pool_seed_variance,
    table_differences,
    table_seed_variance,
)
from bench.store.aggregate import REPLICATES, group_over, mean_std_ci, metric_values

MAX_CURVE_PANELS = 16


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str


@dataclass
class ReportContext:
    """The runs a report covers (the last is the one reported on; the first is the baseline of a
    comparison) and the figures made so far."""

    runs: list[RunData]
    figures: dict[str, Figure] = field(default_factory=dict)

    @property
    def current(self) -> RunData:
        return self.runs[-1]

    def figure(self, name: str, png: bytes, alt: str) -> str:
        self.figures[name] = Figure(name, png, alt)
        return name


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    order: int
    build: Callable[[ReportContext], dict | None]


_SECTIONS: dict[str, Section] = {}


def register_section(name: str, title: str, order: int):
    def wrap(fn: Callable[[ReportContext], dict | None]):
        if name in _SECTIONS:
            raise ValueError(f"report section '{name}' registered twice")
        _SECTIONS[name] = Section(name, title, order, fn)
        return fn

    return wrap


def list_sections() -> list[Section]:
    return sorted(_SECTIONS.values(), key=lambda s: s.order)


# -- helpers ---------------------------------------------------------------------------------------------


def _m(r: CellResult, key: str) -> Any:
    measurement, _, name = key.partition(".")
    return r.measurements.get(measurement, {}).get(name)


@dataclass
class Stat:
    """A metric over the seeds of a group: mean, 95% CI half-width (None with one seed), n."""

    mean: float
    half: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        if not values:
            return None
        s = mean_std_ci(values)
        mean, high = s["mean"], s["ci_high"]
        assert mean is not None  # mean_std_ci always gives non-empty values a mean
        return cls(mean, None if high is None else high - mean, len(values))


_CONFIG_FIELDS = ("resolution", "batch_size", "precision", "strategy", "channels_last", "compile", "backend")


def _with_axes(cells: list, fields=_CONFIG_FIELDS) -> tuple[str, ...]:
    """`fields` plus the dotted-path axes the cells were swept over (train.optimizer, model.dropout, ...)."""
    return tuple(fields) + tuple(dict.fromkeys(k for c in cells for k in c.axes))


def _varying(cells: list, fields=_CONFIG_FIELDS) -> list[str]:
    """Config fields (and swept dotted axes) whose value differs between `cells` (the others go in a
    caption, not a column)."""
    return [f for f in _with_axes(cells, fields) if len({repr(c.value(f)) for c in cells}) > 1]


def _short(cell, varying: list[str]) -> str:
    parts = [cell.model]
    for f in varying:
        value = cell.value(f)
        if "." in f:  # a dotted axis: name=value, without the measurement (optimizer=adam, model.dropout=0.2)
            parts.append(f"{f.removeprefix('train.')}={value}")
        elif f == "resolution":
            parts.append(f"@{value}")
        elif f == "batch_size":
            parts.append(f"bs{value}")
        elif isinstance(value, bool):
            if value:
                parts.append(f"+{f}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def _is_train(r: CellResult) -> bool:
    return r.status == "ok" and isinstance(MACRO_F1.of(r), (int, float))


# -- header ----------------------------------------------------------------------------------------------


def _machine_rows(m: dict) -> list[tuple[str, str]]:
    """The machine's state at the start of the run, as (name, value) rows (absent values left out)."""
    rows = []
    if m.get("load_average"):
        rows.append(("load average at start", " / ".join(f"{v:.2f}" for v in m["load_average"]) + " (1, 5, 15 min)"))
    if m.get("cpu_governor"):
        rows.append(("CPU governor", str(m["cpu_governor"])))
    if m.get("cpu_freq_mhz"):
        rows.append(
            (
                "CPU clock",
                f"{m['cpu_freq_mhz']:.0f} MHz"
                + (f" (max {m['cpu_freq_max_mhz']:.0f})" if m.get("cpu_freq_max_mhz") else ""),
            )
        )
    gpu = m.get("gpu") or {}
    if gpu.get("nvml") == "ok":
        rows.append(
            (
                "GPU clocks",
                f"SM {gpu.get('sm_clock_mhz')}/{gpu.get('sm_clock_max_mhz')} MHz, memory "
                f"{gpu.get('mem_clock_mhz')}/{gpu.get('mem_clock_max_mhz')} MHz, locked: {gpu.get('clocks_locked')}",
            )
        )
        rows.append(
            (
                "GPU power",
                f"limit {gpu.get('power_limit_w')} W, drawing {gpu.get('power_draw_w')} W, {gpu.get('temperature_c')} °C",
            )
        )
        rows.append(("GPU throttle reasons", ", ".join(gpu.get("throttle_reasons") or []) or "none"))
    elif gpu:
        rows.append(("GPU state", f"NVML {gpu.get('nvml')}"))
    return rows


def _evaluation_text(results: list[CellResult]) -> str | None:
    """Which images the report's accuracy figures come from (None: nothing trained)."""
    kind = evaluated_on(results)
    if kind is None:
        return None
    if kind == "validation":
        return "the validation set (a run made before bench held out a test set: the checkpoint was chosen on these images too)"
    trained = [t for r in results if (t := r.measurements.get("train") or {}).get("status") == "ok"]
    sizes = sorted({int(t["n_test"]) for t in trained if t.get("n_test") is not None})
    few = sorted({c for t in trained for c in t.get("classes_few_images") or []})
    text = (
        f"the held-out test set ({', '.join(map(str, sizes))} images; checkpoints chosen on a separate validation set)"
    )
    return text + (f"; classes with under 10 test images: {', '.join(few)}" if few else "")


@register_section("header", "Run", 0)
def header(ctx: ReportContext) -> dict:
    run = ctx.current
    env = run.env
    counts = {s: sum(r.status == s for r in run.results) for s in ("ok", "failed", "skipped")}
    synthetic = sorted({d for rd in ctx.runs for d in synthetic_datasets(rd.results)})
    gpu = env.get("gpu_name")
    machine = env.get("machine") or {}
    return {
        "suite": run.name,
        "description": (run.suite.get("description") or "").strip(),
        "runs": [rd.label for rd in ctx.runs],
        "run_dir": str(run.run_dir),
        "date": env.get("time_utc") or run.run_dir.name,
        "git_commit": env.get("git_commit") or "unknown",
        "profile": run.suite.get("profile") or "none",
        "env": [
            ("python", env.get("python")),
            ("torch", env.get("torch")),
            ("torchvision", env.get("torchvision")),
            ("timm", env.get("timm")),
            ("device", env.get("device")),
            (
                "CPU",
                f"{env.get('cpu_model')} ({env.get('cpu_cores_usable')} of {env.get('cpu_cores')} cores usable, {env.get('torch_threads')} torch threads)"
                if env.get("cpu_model")
                else None,
            ),
            ("GPU", f"{gpu} (driver {env.get('gpu_driver')})" if gpu else None),
            ("accuracy metrics from", _evaluation_text(run.results)),
            ("C allocator", _allocator_text(env)),
            (
                "speed-relevant environment variables",
                ", ".join(f"{k}={v}" for k, v in env["env_vars"].items()) or "none set"
                if isinstance(env.get("env_vars"), dict)
                else None,
            ),
        ],
        "counts": counts,
        "total": len(run.results),
        "machine": _machine_rows(machine),
        "machine_warnings": machine_warnings(machine, str(env.get("device") or "").split(":")[0] or None),
        "cell_time_s": sum(r.duration_s or 0.0 for r in run.results),
        "shared": sum(bool(r.measurements.get("train", {}).get("trained_in_cell")) for r in run.results),
        "headline": _headline(run),
        "synthetic": synthetic,
        "synthetic_notice": SYNTHETIC_NOTICE,
    }


def _allocator_text(env: dict) -> str | None:
    """The run's `allocator` (bench.platform.allocator), as env.json records it: what the processes that time
    cells ran with. None for a run made before bench recorded it."""
    info = env.get("allocator")
    if not isinstance(info, dict):
        return None
    return f"{info.get('cells')} (setting {info.get('setting')}; not part of cell ids)"


def _headline(run: RunData) -> dict | None:
    """The run's best trained cell by macro-F1 (the founding experiments' judge), or its fastest one."""
    trained = [r for r in run.results if _is_train(r)]
    if trained:
        best = max(trained, key=lambda r: MACRO_F1.of(r))
        return {
            "metric": "macro-F1",
            "value": MACRO_F1.of(best),
            ACCURACY.key: ACCURACY.of(best),
            "label": best.cell.label(),
        }
    timed = [r for r in run.results if r.status == "ok" and isinstance(THROUGHPUT.of(r), (int, float))]
    if timed:
        best = max(timed, key=lambda r: THROUGHPUT.of(r))
        return {
            "metric": "img/s",
            "value": THROUGHPUT.of(best),
            ACCURACY.key: None,
            "label": best.cell.label(),
        }
    return None


# -- comparison of runs ---------------------------------------------------------------------------------

COMPARE_METRICS: tuple[tuple[str, Metric, str], ...] = (
    # header, metric, better (a change of GMACs is a change, whatever its direction)
    (THROUGHPUT.label, THROUGHPUT, HIGHER),
    (LATENCY_MEDIAN.label, LATENCY_MEDIAN, LOWER),
    (ACCURACY.key, ACCURACY, HIGHER),  # its name: the label is the short "acc"
    (MACRO_F1.label, MACRO_F1, HIGHER),
    (PARAMS.label, PARAMS, EXACT),
    (GMACS.label, GMACS, EXACT),
)


@register_section("comparison", "Runs compared (cells matched by id)", 5)
def comparison(ctx: ReportContext) -> dict | None:
    if len(ctx.runs) < 2:
        return None
    base = ctx.runs[0]
    base_by_id = {r.id: r for r in base.results}
    blocks = []
    for other in ctx.runs[1:]:
        other_by_id = {r.id: r for r in other.results}
        matched = [i for i in other_by_id if i in base_by_id]
        metrics = [
            m
            for m in COMPARE_METRICS
            if any(m[1].of(base_by_id[i]) is not None and m[1].of(other_by_id[i]) is not None for i in matched)
        ]
        rows = []
        for i in matched:
            a, b = base_by_id[i], other_by_id[i]
            cells: list[dict[str, Any] | None] = []
            for _, metric, direction in metrics:
                va, vb = metric.of(a), metric.of(b)
                if not isinstance(va, (int, float)) or not isinstance(vb, (int, float)):
                    cells.append(None)
                    continue
                rel = (vb - va) / abs(va) if va else (0.0 if vb == va else math.inf)
                better = None if direction == EXACT or vb == va else ((vb > va) == (direction == HIGHER))
                cells.append({"base": va, "current": vb, "rel": rel, "better": better, "changed": vb != va})
            rows.append({"id": i, "label": b.cell.label(), "status": f"{a.status} → {b.status}", "cells": cells})
        blocks.append(
            {
                "baseline": base.label,
                "current": other.label,
                "metrics": [m[0] for m in metrics],
                "rows": rows,
                "only_baseline": sorted(set(base_by_id) - set(other_by_id)),
                "only_current": sorted(set(other_by_id) - set(base_by_id)),
            }
        )
    return {"blocks": blocks}


# -- leaderboard -----------------------------------------------------------------------------------------

MEMORY_COLUMN = "memory"  # not a metric path: each cell's headline memory metric


def _column_values(members: list[CellResult], key: str) -> list[float]:
    if key != MEMORY_COLUMN:
        return metric_values(members, key)
    return [v for r in members if (v := memory_headline(r).number(r)) is not None]


LEADERBOARD_COLUMNS: tuple[tuple[str, str, float, str], ...] = (
    # header, metric (its path: the stats' key), scale, better
    ("params (M)", PARAMS.path, 1e-6, LOWER),
    ("GMACs", GMACS.path, 1.0, LOWER),
    ("img/s", THROUGHPUT.path, 1.0, HIGHER),
    ("latency p50 (ms)", LATENCY_MEDIAN.path, 1.0, LOWER),
    # the headline memory (memory_headline): on a CPU what the cell added, on a GPU the peak allocated
    ("memory (MB)", MEMORY_COLUMN, 1.0, LOWER),
    (ACCURACY.key, ACCURACY.path, 1.0, HIGHER),
    ("macro-F1", MACRO_F1.path, 1.0, HIGHER),
    ("train time (s)", "train.train_time_s", 1.0, LOWER),  # not in the catalogue: shown, never judged
)


def _groups(run: RunData) -> list[list[CellResult]]:
    return list(group_over(run.results, *REPLICATES).values())


@register_section("leaderboard", "Leaderboard", 10)
def leaderboard(ctx: ReportContext) -> dict | None:
    groups = _groups(ctx.current)
    if not groups:
        return None
    firsts = [g[0].cell for g in groups]
    varying = _varying(firsts)
    rows: list[dict[str, Any]] = []
    for members in groups:
        c = members[0].cell
        stats = {
            key: Stat.of([v * scale for v in _column_values(members, key)]) for _, key, scale, _ in LEADERBOARD_COLUMNS
        }
        rows.append(
            {
                "model": c.model,
                "family": c.family,
                "config": [c.value(f) for f in varying],
                "seeds": len(members),
                "stats": stats,
            }
        )
    columns = [col for col in LEADERBOARD_COLUMNS if any(r["stats"][col[1]] is not None for r in rows)]
    best: dict[str, float] = {}
    for header_, key, _, better in columns:
        values = [r["stats"][key].mean for r in rows if r["stats"][key] is not None]
        if len(set(values)) > 1:  # a column where every row is equal has no best
            best[key] = (max if better == HIGHER else min)(values)
    sort_key = next(
        (k for k in (MACRO_F1.path, THROUGHPUT.path, GMACS.path) if any(c[1] == k for c in columns)),
        None,
    )
    if sort_key:
        sign = -1 if sort_key != GMACS.path else 1
        rows.sort(
            key=lambda r: (
                r["stats"][sort_key] is None,
                sign * (r["stats"][sort_key].mean if r["stats"][sort_key] else 0),
            )
        )
    fixed = {f: getattr(firsts[0], f) for f in _CONFIG_FIELDS if f not in varying}
    return {
        "config_headers": varying,
        "fixed": fixed,
        "columns": [{"header": h, "key": k, "better": b} for h, k, _, b in columns],
        "rows": rows,
        "best": best,
        "sorted_by": next((h for h, k, _, _ in columns if k == sort_key), None),
        "multi_seed": any(r["seeds"] > 1 for r in rows),
        "memory_kinds": sorted({memory_headline(r).label for g in groups for r in g if memory_headline(r).number(r)}),
    }


# -- Pareto frontiers and cost --------------------------------------------------------------------------


def _points(run: RunData, x_metric: Metric, y_metric: Metric, x_scale: float = 1.0) -> list[plots.Point]:
    groups = _groups(run)
    firsts = [g[0].cell for g in groups]
    varying = _varying(firsts)
    points = []
    for members in groups:
        xs, ys = metric_values(members, x_metric.path), metric_values(members, y_metric.path)
        y = Stat.of(ys)
        if not xs or y is None:
            continue
        points.append(
            plots.Point(
                _short(members[0].cell, varying), members[0].cell.family, float(np.mean(xs)) * x_scale, y.mean, y.half
            )
        )
    return points


PARETO_AXES: tuple[tuple[str, Metric, float, str, bool], ...] = (
    # axis name (in the figure's name), metric, scale, axis label, higher is better
    (GMACS.key, GMACS, 1.0, "GMACs (batch 1, log)", False),
    (PARAMS.key, PARAMS, 1e-6, "params (M, log)", False),
    ("throughput", THROUGHPUT, 1.0, "inference img/s (log)", True),
)


def _f1_label(run: RunData) -> str:
    """macro-F1's axis label with where it was measured (the held-out test set, or validation in older runs)."""
    return f"macro-F1 ({evaluated_on(run.results) or 'test'})"


@register_section("pareto", "Pareto frontiers: macro-F1 against cost", 20)
def pareto(ctx: ReportContext) -> dict | None:
    figures = []
    for name, metric, scale, label, higher in PARETO_AXES:
        pts = _points(ctx.current, metric, MACRO_F1, scale)
        if len(pts) < 2:
            continue
        png = plots.scatter(
            pts, x_label=label, y_label=_f1_label(ctx.current), title=f"macro-F1 vs {name}", higher_x_better=higher
        )
        on_front = [p.label for p in plots.frontier(pts, higher)]
        figures.append(
            {
                "figure": ctx.figure(f"pareto_{name}", png, f"macro-F1 vs {name}; frontier: {', '.join(on_front)}"),
                "axis": name,
                "frontier": on_front,
            }
        )
    return {"figures": figures} if figures else None


@register_section("cost", "Throughput against compute", 25)
def cost(ctx: ReportContext) -> dict | None:
    pts = _points(ctx.current, GMACS, THROUGHPUT)
    if len(pts) < 2:
        return None
    png = plots.scatter(
        pts,
        x_label="GMACs (batch 1, log)",
        y_label="inference img/s (log)",
        title="throughput vs GMACs",
        higher_x_better=None,
        log_y=True,
    )
    return {
        "figure": ctx.figure("cost_throughput_gmacs", png, "inference throughput against GMACs, coloured by family")
    }


@register_section("efficiency", "Efficiency: energy per image and the cost of a million images", 27)
def efficiency(ctx: ReportContext) -> dict | None:
    """bench.report.efficiency's rows, and macro-F1 against J/image where both were measured."""
    data = efficiency_data(ctx.current)
    pts = _points(ctx.current, ENERGY_PER_IMAGE, MACRO_F1)
    if data is not None and len(pts) >= 2:
        png = plots.scatter(
            pts,
            x_label="J/image (log)",
            y_label=_f1_label(ctx.current),
            title="macro-F1 vs J/image",
            higher_x_better=False,
        )
        data["figure"] = ctx.figure("efficiency_f1_energy", png, "macro-F1 against inference energy per image")
    return data


@register_section("data_path", "Data path: end-to-end inference against the model alone", 28)
def data_path(ctx: ReportContext) -> dict | None:
    """bench.report.datapath's rows: where decoding and batching cost throughput."""
    return data_path_data(ctx.current)


# -- EfficientNet vs the paper ---------------------------------------------------------------------------


@register_section("efficientnet", "EfficientNet scaling vs the paper's Table 2", 30)
def efficientnet(ctx: ReportContext) -> dict | None:
    rows = efficientnet_paper_rows(ctx.current.results)
    if not rows:
        return None
    for r in rows:
        r["paper_params_text"] = paper_figure(r["paper_params"] / 1e6)
        r["paper_gmacs_text"] = paper_figure(r["paper_macs"] / 1e9)
    return {"rows": rows}


# -- strategy and precision comparisons ------------------------------------------------------------------


def _pairs(run: RunData, ref: list[CellResult], other: list[CellResult]) -> tuple[list[Pair], int]:
    """The (seed, split) pairs both sides have, with predictions on the same test images in the same order."""
    ref_by_replicate = {(r.cell.seed, axis_paths.value_of(r.cell, REPLICATES[1])): r for r in ref}
    pairs, n_classes = [], 0
    for o in other:
        replicate = (o.cell.seed, axis_paths.value_of(o.cell, REPLICATES[1]))
        r = ref_by_replicate.get(replicate)
        if r is None:
            continue
        pa, pb = run.predictions(r), run.predictions(o)
        if pa is None or pb is None or pa.keys != pb.keys or not np.array_equal(pa.y_true, pb.y_true):
            continue
        split = str(hash(pa.keys))  # the same test images: one set of bootstrap indices
        pairs.append(Pair(split, pa.y_true, pa.y_pred, pb.y_pred, replicate=repr(replicate)))
        n_classes = max(n_classes, pa.n_classes, pb.n_classes)
    return pairs, n_classes


def _judge_tables(run: RunData, tables: list[list[tuple[dict, list[CellResult], list[CellResult]]]]) -> None:
    """Set `row["delta"]` (macro-F1 of the row's cells against the reference, bench.report.noise) for every
    row of every comparison table: the seed-to-seed variance is pooled over each table's rows (a two-way fit,
    `table_seed_variance`), and over the tables for a table with one seed per side; Holm-adjusted within
    each table."""
    computed = []
    for table in tables:
        rows, seeds = [], []
        for _, ref, cells in table:
            pairs, n_classes = _pairs(run, ref, cells)
            rows.append(Row("|".join(sorted(r.id for r in ref)), pairs, n_classes))
            seeds.append(cells[0].cell.seed)
        computed.append((table, rows, seeds, table_seed_variance(rows)))
    run_pool = pool_seed_variance([estimate for *_, estimate in computed])
    for table, rows, seeds, estimate in computed:
        diffs = table_differences(rows, seeds=seeds, table_pool=estimate, run_pool=run_pool)
        for (row, *_), diff in zip(table, diffs):
            row["delta"] = (
                diff.to_dict()
                if diff is not None
                else dict.fromkeys(Difference.__dataclass_fields__) | {"verdict": "inconclusive"}
            )


def _f1_error(run: RunData, members: list[CellResult]) -> tuple[float | None, str]:
    """Error-bar half-width of a group's macro-F1: CI over seeds (n >= 2), else a bootstrap over images."""
    st = Stat.of(metric_values(members, MACRO_F1.path))
    if st and st.half is not None:
        return st.half, "seeds"
    p = run.predictions(members[0])
    if p is None:
        return None, "none"
    low, high = percentile_interval(bootstrap_macro_f1(p.y_true, p.y_pred, p.n_classes, seed=members[0].cell.seed))
    return (high - low) / 2, "bootstrap"


@register_section("strategies", "Strategy comparison: macro-F1 by sampling/loss strategy", 40)
def strategies(ctx: ReportContext) -> dict | None:
    run = ctx.current
    train = [r for r in run.results if _is_train(r)]
    blocks = []
    tables: list[list[tuple[dict, list[CellResult], list[CellResult]]]] = []
    for members in group_over(train, *REPLICATES, "strategy", "strategy_config").values():
        by_strategy: dict[str, list[CellResult]] = {}
        for r in members:
            by_strategy.setdefault(r.cell.strategy, []).append(r)
        if len(by_strategy) < 2:
            continue
        ref_name = "none" if "none" in by_strategy else next(iter(by_strategy))
        ref = by_strategy[ref_name]
        rows = []
        table = []
        for name, cells in by_strategy.items():
            f1 = Stat.of(metric_values(cells, MACRO_F1.path))
            acc = Stat.of(metric_values(cells, ACCURACY.path))
            err, err_kind = _f1_error(run, cells)
            row = {"strategy": name, "f1": f1, "acc": acc, "err": err, "err_kind": err_kind, "delta": None}
            rows.append(row)
            if name != ref_name:
                table.append((row, ref, cells))
        tables.append(table)
        c = members[0].cell
        blocks.append(
            {"title": _short(c, ["resolution", "precision"]), "model": c.model, "reference": ref_name, "rows": rows}
        )
    if not blocks:
        return None
    _judge_tables(run, tables)
    names = list(dict.fromkeys(row["strategy"] for b in blocks for row in b["rows"]))
    values = {(b["title"], row["strategy"]): (row["f1"].mean, row["err"]) for b in blocks for row in b["rows"]}
    png = plots.grouped_bars(
        [b["title"] for b in blocks],
        names,
        values,
        y_label="macro-F1",
        title="macro-F1 by strategy (error bars: 95% CI)",
    )
    return {
        "blocks": blocks,
        "figure": ctx.figure("strategies", png, "macro-F1 by strategy per model, with 95% intervals"),
    }


# -- sweeps: a metric against a numeric axis; categorical axes (the optimizer) compared ---------------------

NUMERIC_BUILTIN = ("batch_size", "resolution")
SWEEP_METRICS = ((MACRO_F1, None), (THROUGHPUT, "inference img/s"))  # None: _f1_label
LOG_AXES = ("train.lr", "train.weight_decay")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dotted_axes(results: list[CellResult]) -> list[str]:
    """The dotted-path axes the suite swept (train.lr, model.dropout, ...), in suite order."""
    return list(dict.fromkeys(k for r in results for k in r.cell.axes))


def _numeric_axes(results: list[CellResult]) -> list[str]:
    out = [a for a in NUMERIC_BUILTIN if len({getattr(r.cell, a) for r in results}) > 1]
    for axis in _dotted_axes(results):
        values = {repr(r.cell.value(axis)) for r in results}
        if len(values) > 1 and all(_is_number(r.cell.value(axis)) for r in results):
            out.append(axis)
    return out


def _group_without(results: list[CellResult], *axes: str) -> dict[str, list[CellResult]]:
    """Cells of any status grouped by their identity without the given axes (built-in or dotted)."""
    return group_over(results, *axes, statuses=("ok", "failed", "skipped"))


def _others_label(cell, firsts: list, skip: str) -> str:
    """What else distinguishes this cell's group from the others (besides the model and `skip`)."""
    fields = [f for f in _CONFIG_FIELDS if f != skip and len({getattr(c, f) for c in firsts}) > 1]
    dotted = [
        a
        for a in dict.fromkeys(k for c in firsts for k in c.axes)
        if a != skip and len({repr(c.value(a)) for c in firsts}) > 1
    ]
    parts = [f"{f}={getattr(cell, f)}" for f in fields] + [
        f"{a.removeprefix('train.')}={cell.value(a)}" for a in dotted
    ]
    return ", ".join(parts)


@register_section("sweeps", "Sweeps: a metric against a numeric axis (batch size, epochs, learning rate, ...)", 44)
def sweeps(ctx: ReportContext) -> dict | None:
    run = ctx.current
    ok = [r for r in run.results if r.status == "ok"]
    blocks = []
    for axis in _numeric_axes(ok):
        for metric, label in SWEEP_METRICS:
            metric_label = label or _f1_label(run)
            measured = [r for r in ok if metric.number(r) is not None]
            groups = [
                g
                for g in _group_without(measured, axis, *REPLICATES).values()
                if len({r.cell.value(axis) for r in g}) > 1
            ]
            if not groups:
                continue
            firsts = [g[0].cell for g in groups]
            panels: dict[str, list[plots.Line]] = {}
            rows = []
            for members in groups:
                by_x: dict[float, list[CellResult]] = {}
                for r in members:
                    by_x.setdefault(r.cell.value(axis), []).append(r)
                xs = sorted(by_x)
                stats: list[Stat] = []
                for x in xs:
                    st = Stat.of(metric_values(by_x[x], metric.path))
                    assert st is not None  # every cell in `measured` has the metric
                    stats.append(st)
                label = _others_label(members[0].cell, firsts, axis)
                panels.setdefault(members[0].cell.model, []).append(
                    plots.Line(label, xs, [st.mean for st in stats], [st.half for st in stats])
                )
                best = max(range(len(xs)), key=lambda i: stats[i].mean)
                shared = any(r.measurements.get("train", {}).get("trained_in_cell") for r in members)
                rows.append(
                    {
                        "model": members[0].cell.model,
                        "label": label,
                        "points": [(x, st) for x, st in zip(xs, stats)],
                        "best_x": xs[best],
                        "best": stats[best],
                        "shared": shared,
                    }
                )
            xs_all = [r.cell.value(axis) for r in measured]
            log_x = axis in LOG_AXES or (min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 50)
            name = f"sweep_{axis.replace('.', '_')}_{metric.path.replace('.', '_')}"
            png = plots.sweep_lines(
                list(panels.items()), x_label=axis + (" (log)" if log_x else ""), y_label=metric_label, log_x=log_x
            )
            blocks.append(
                {
                    "axis": axis,
                    "metric": metric_label,
                    "rows": rows,
                    "figure": ctx.figure(name, png, f"{metric_label} against {axis}, one panel per model"),
                }
            )
    return {"blocks": blocks} if blocks else None


def _axis_comparison(ctx: ReportContext, axis: str, preferred_reference: str | None) -> dict | None:
    """Blocks of cells that differ only in a categorical `axis` (and seed): each value's macro-F1 and
    accuracy, and its Δ macro-F1 against the reference value with a paired bootstrap interval."""
    run = ctx.current
    train = [r for r in run.results if _is_train(r)]
    blocks: list[dict[str, Any]] = []
    tables: list[list[tuple[dict, list[CellResult], list[CellResult]]]] = []
    groups = [
        g for g in _group_without(train, axis, *REPLICATES).values() if len({repr(r.cell.value(axis)) for r in g}) > 1
    ]
    firsts = [g[0].cell for g in groups]
    for members in groups:
        by_value: dict[str, list[CellResult]] = {}
        for r in members:
            by_value.setdefault(str(r.cell.value(axis)), []).append(r)
        ref_name = preferred_reference if preferred_reference in by_value else next(iter(by_value))
        ref = by_value[ref_name]
        rows = []
        table = []
        for name, cells in by_value.items():
            err, err_kind = _f1_error(run, cells)
            row = {
                "value": name,
                "f1": Stat.of(metric_values(cells, MACRO_F1.path)),
                "acc": Stat.of(metric_values(cells, ACCURACY.path)),
                "err": err,
                "err_kind": err_kind,
                "delta": None,
            }
            rows.append(row)
            if name != ref_name:
                table.append((row, ref, cells))
        tables.append(table)
        c = members[0].cell
        others = _others_label(c, firsts, axis)
        blocks.append({"title": c.model + (f" ({others})" if others else ""), "reference": ref_name, "rows": rows})
    if not blocks:
        return None
    _judge_tables(run, tables)
    names = list(dict.fromkeys(row["value"] for b in blocks for row in b["rows"]))
    values = {(b["title"], row["value"]): (row["f1"].mean, row["err"]) for b in blocks for row in b["rows"]}
    png = plots.grouped_bars(
        [b["title"] for b in blocks],
        names,
        values,
        y_label="macro-F1",
        title=f"macro-F1 by {axis} (error bars: 95% CI)",
    )
    return {
        "axis": axis,
        "blocks": blocks,
        "figure": ctx.figure(f"compare_{axis.replace('.', '_')}", png, f"macro-F1 by {axis}, with 95% intervals"),
    }


@register_section("optimizers", "Optimizer comparison: macro-F1 by optimizer", 42)
def optimizers(ctx: ReportContext) -> dict | None:
    return _axis_comparison(ctx, "train.optimizer", "adam")


@register_section("precisions", "Precision comparison: speed-up and accuracy cost over fp32", 50)
def precisions(ctx: ReportContext) -> dict | None:
    run = ctx.current
    blocks = []
    table: list[tuple[dict, list[CellResult], list[CellResult]]] = []  # one family: every Δ macro-F1 vs fp32
    # skipped cells count too: a cell whose training was skipped (fp16 on a CPU) still measured its speed
    for members in group_over(run.results, *REPLICATES, "precision", statuses=("ok", "skipped")).values():
        by_precision: dict[str, list[CellResult]] = {}
        for r in members:
            by_precision.setdefault(r.cell.precision, []).append(r)
        if "fp32" not in by_precision or len(by_precision) < 2 or all(r.status != "ok" for r in by_precision["fp32"]):
            continue
        ref = by_precision["fp32"]

        def mean(cells: list[CellResult], metric: Metric) -> float | None:
            values = metric_values(cells, metric.path)
            return float(np.mean(values)) if values else None

        rows = []
        for name, cells in by_precision.items():
            if name == "fp32":
                continue
            row: dict[str, Any] = {"precision": name, "f1_verdict": None}
            for label, metric in (("infer", THROUGHPUT), ("train", TRAIN_THROUGHPUT)):
                a, b = mean(ref, metric), mean(cells, metric)
                row[f"{label}_speedup"] = b / a if a and b else None
            a, b = mean(ref, PEAK_MEMORY), mean(cells, PEAK_MEMORY)
            row["mem_ratio"] = b / a if a and b else None
            for label, metric in (("acc", ACCURACY), ("f1", MACRO_F1)):
                a, b = mean(ref, metric), mean(cells, metric)
                row[f"{label}_delta"] = None if a is None or b is None else b - a
            if row["f1_delta"] is not None:
                table.append((row, ref, cells))
            row["note"] = "; ".join(sorted({c.reason for c in cells if c.status != "ok" and c.reason}))
            rows.append(row)
        c = members[0].cell
        blocks.append(
            {
                "title": _short(
                    c,
                    ["resolution", "batch_size", "strategy"] if "train" in c.measure else ["resolution", "batch_size"],
                ),
                "fp32_img_s": mean(ref, THROUGHPUT),
                "fp32_train_img_s": mean(ref, TRAIN_THROUGHPUT),
                "fp32_f1": mean(ref, MACRO_F1),
                "rows": rows,
            }
        )
    if not blocks:
        return None
    _judge_tables(run, [table])
    for row, _, _ in table:
        row["f1_verdict"] = row.pop("delta")["verdict"]
    return {"blocks": blocks, "formats": _format_rows(blocks)}


def _format_rows(blocks: list[dict]) -> list[dict]:
    """Each precision's number format (torch.finfo) next to what it measured here, over the models:
    geometric mean of the speed-ups, mean of the Δ."""
    from bench.platform.number_formats import format_info  # deferred: imports torch

    rows = []
    for name in ("fp32", "bf16", "fp16"):
        entries = [r for b in blocks for r in b["rows"] if r["precision"] == name]
        if name != "fp32" and not entries:
            continue
        info = format_info(name)
        assert info is not None  # fp32, bf16 and fp16 are known formats
        row = {**info, "models": len(blocks) if name == "fp32" else len(entries)}
        for key in ("infer_speedup", "train_speedup", "mem_ratio"):
            values = [r[key] for r in entries if r[key]]
            row[key] = 1.0 if name == "fp32" else (float(np.exp(np.mean(np.log(values)))) if values else None)
        for key in ("acc_delta", "f1_delta"):
            values = [r[key] for r in entries if r[key] is not None]
            row[key] = 0.0 if name == "fp32" else (float(np.mean(values)) if values else None)
        rows.append(row)
    return rows


# -- training curves and the long tail -------------------------------------------------------------------


@register_section("curves", "Training curves", 60)
def curves(ctx: ReportContext) -> dict | None:
    train = [r for r in ctx.current.results if _is_train(r) and _m(r, "train.curves")]
    if not train:
        return None
    shown = sorted(train, key=lambda r: -MACRO_F1.of(r))[:MAX_CURVE_PANELS] if len(train) > MAX_CURVE_PANELS else train
    varying = _varying([r.cell for r in train], _CONFIG_FIELDS + ("seed",))
    panels = [(_short(r.cell, varying) + f" (best ep {BEST_EPOCH.of(r)})", _m(r, "train.curves")) for r in shown]
    png = plots.curves_grid(panels)
    return {
        "figure": ctx.figure("curves", png, "loss and validation macro-F1 per epoch, one panel per cell"),
        "shown": len(shown),
        "total": len(train),
    }


@register_section("long_tail", "Long tail: per-class F1 of the best cell", 70)
def long_tail(ctx: ReportContext) -> dict | None:
    candidates = [
        r
        for r in ctx.current.results
        if _is_train(r) and _m(r, "train.per_class") and _m(r, "train.train_class_counts")
    ]
    if not candidates:
        return None
    best = max(candidates, key=lambda r: MACRO_F1.of(r))
    per_class = _m(best, "train.per_class")
    counts = list(_m(best, "train.train_class_counts"))
    classes, f1 = per_class["class"], per_class["f1"]
    if len(counts) != len(classes):
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr(counts, f1).statistic) if len(set(counts)) > 1 and len(set(f1)) > 1 else None
    table = sorted(
        (
            {"class": c, "count": n, "f1": f, "support": s, "precision": p, "recall": rc, "few": few}
            for c, n, f, s, p, rc, few in zip(
                classes,
                counts,
                f1,
                per_class["support"],
                per_class["precision"],
                per_class["recall"],
                per_class.get("few_images") or [False] * len(classes),  # flagged by the metrics (under 10 images)
            )
        ),
        key=lambda row: -row["count"],
    )
    label = best.cell.label()
    out = {
        "cell": label,
        "cell_id": best.id,
        MACRO_F1.key: MACRO_F1.of(best),
        "spearman": rho,
        "rows": table,
        "worst": sorted(table, key=lambda row: row["f1"])[:5],
        "scatter": ctx.figure(
            "long_tail",
            plots.per_class_vs_frequency(counts, f1, classes, f"per-class F1 vs class size — {label}"),
            "per-class F1 against the number of training images of the class",
        ),
    }
    matrix = _m(best, "train.confusion_matrix")
    if matrix:
        out["confusion"] = ctx.figure(
            "confusion",
            plots.confusion(matrix, classes, f"confusion (row-normalised) — {label}"),
            "row-normalised confusion matrix of the best cell",
        )
    return out


# -- measurement fidelity: FLOP coverage, and how each cell was measured ---------------------------------


def _per_image(value, batch) -> float | None:
    return value / batch if isinstance(value, (int, float)) and batch else None


@register_section("flop_coverage", "FLOP coverage: what the counter counted, and what it did not", 32)
def flop_coverage(ctx: ReportContext) -> dict | None:
    """Per model and resolution: the MAC headline, elementwise work apart, the ops with no formula and the
    share of the work they may be, training FLOPs, and achieved FLOP/s where speed or training ran."""
    rows = []
    groups = list(
        group_over(
            [r for r in ctx.current.results if MACS.of(r) is not None],
            *REPLICATES,
            "strategy",
            "strategy_config",
            statuses=("ok", "skipped"),
        ).values()
    )
    varying = _varying(
        [g[0].cell for g in groups], ("resolution", "batch_size", "precision", "channels_last", "compile")
    )
    if "resolution" not in varying:
        varying = ["resolution", *varying]
    for members in groups:
        r = members[0]
        batch = FLOPS_BATCH_SIZE.of(r) or 1
        fwd = _per_image(FLOPS.of(r), batch)
        train_flops = TRAIN_FLOPS_PER_IMAGE.of(r)
        img_s = metric_values(members, THROUGHPUT.path)
        train_img_s = metric_values(members, TRAIN_THROUGHPUT.path)
        uncounted = _m(r, "profile.uncounted") or {}
        rows.append(
            {
                "model": _short(r.cell, varying),
                GMACS.key: GMACS.of(r) / batch,
                "elementwise_gflops": _per_image(_m(r, "profile.elementwise_gflops"), batch),
                "elementwise_share": _m(r, "profile.elementwise_share"),
                "elementwise_ops": ", ".join(sorted(_m(r, "profile.elementwise_by_op") or {})),
                "uncounted": [
                    f"{name} ({v.get('calls')} calls, {v.get('output_elements')} elements)"
                    for name, v in uncounted.items()
                ]
                if isinstance(uncounted, dict)
                else [str(u) for u in uncounted],
                "uncounted_share": _m(r, "profile.uncounted_share"),
                "threshold": _m(r, "profile.uncounted_share_threshold"),
                "flagged": bool(_m(r, "profile.flops_coverage_flag")),
                "train_gflops": train_flops / 1e9 if train_flops else None,
                "train_ratio": _m(r, "profile.train_to_forward"),
                "infer_gflop_s": float(np.mean(img_s)) * fwd / 1e9 if img_s and fwd else None,
                "train_gflop_s": float(np.mean(train_img_s)) * train_flops / 1e9
                if train_img_s and train_flops
                else None,
            }
        )
    if not rows or all(row["elementwise_share"] is None for row in rows):
        return None
    return {
        "rows": rows,
        "flagged": [row["model"] for row in rows if row["flagged"]],
        "has_train": any(row["train_gflops"] for row in rows),
        "has_achieved": any(row["infer_gflop_s"] or row["train_gflop_s"] for row in rows),
    }


# the section is named after the metric it shows (its templates: sections/mfu.*.j2)
@register_section(INFERENCE_MFU.key, "Model FLOP utilisation (MFU): achieved FLOP/s against the device's peak", 33)
def mfu(ctx: ReportContext) -> dict | None:
    """Per cell (seeds averaged): achieved TFLOP/s and MFU for inference (forward FLOPs = 2 x MACs per image
    x img/s) and training (forward + backward FLOPs per image x train img/s), against the device's dense
    peak at the cell's precision (bench.platform.peaks): a GPU's datasheet peak, a CPU's measured one (a dense
    matmul, said how). Shown whenever a cell recorded it, with the reason when the device has no known peak."""
    results = [
        r
        for r in ctx.current.results
        if "mfu_reason" in (r.measurements.get("speed") or {}) or "mfu_reason" in (r.measurements.get("train") or {})
    ]
    if not results:
        return None
    groups = list(group_over(results, *REPLICATES, statuses=("ok", "skipped")).values())
    varying = _varying(
        [g[0].cell for g in groups], ("resolution", "batch_size", "precision", "strategy", "channels_last", "compile")
    )
    rows: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    peaks: dict[tuple[Any, Any], Any] = {}
    for members in groups:
        r = members[0]

        def mean(key: str) -> float | None:
            vals = [v for v in metric_values(members, key) if v is not None]
            return float(np.mean(vals)) if vals else None

        for kind in ("speed", "train"):
            reason = _m(r, f"{kind}.mfu_reason")
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
            if _m(r, f"{kind}.peak_tflop_s"):
                peak = (_m(r, f"{kind}.peak_tflop_s"), _m(r, f"{kind}.peak_kind"), _m(r, f"{kind}.peak_source"))
                peaks[(_m(r, f"{kind}.mfu_device"), _m(r, f"{kind}.peak_precision"))] = peak
        rows.append(
            {
                "model": _short(r.cell, varying),
                "precision": r.cell.precision,
                "infer_tflop_s": mean("speed.achieved_tflop_s"),
                "infer_peak": _m(r, "speed.peak_tflop_s"),
                "infer_peak_precision": _m(r, "speed.peak_precision"),
                "infer_mfu": mean(INFERENCE_MFU.path),
                "train_tflop_s": mean("train.achieved_tflop_s"),
                "train_peak": _m(r, "train.peak_tflop_s"),
                "train_mfu": mean(TRAINING_MFU.path),
            }
        )
    return {
        "rows": rows,
        "reasons": [f"{reason} ({n} cells)" for reason, n in reasons.items()],
        "peaks": [
            f"{dev}: {tflops:.3g} TFLOP/s {prec}, {source}"
            if kind == "measured"
            else f"{dev}: {tflops:g} TFLOP/s dense {prec}"
            for (dev, prec), (tflops, kind, source) in peaks.items()
        ],
        "has_mfu": any(row["infer_mfu"] is not None or row["train_mfu"] is not None for row in rows),
        "has_train": any(row["train_tflop_s"] is not None for row in rows),
    }


@register_section("measured", "How each cell was measured", 75)
def measured(ctx: ReportContext) -> dict | None:
    """What actually ran, cell by cell: batch size (and any fallback), resolution, precision and compute
    dtype, memory format, warm-up discarded and whether it settled, timing method, repeats, isolation."""
    rows = []
    for r in ctx.current.results:
        sp = r.measurements.get("speed") or {}
        if sp.get("status") != "ok":
            continue
        requested = sp.get("requested_batch_size", r.cell.batch_size)
        rows.append(
            {
                "id": r.id,
                "label": r.cell.label(),
                "batch_size": SPEED_BATCH_SIZE.of(r),
                "requested_batch_size": requested,
                "changed": SPEED_BATCH_SIZE.of(r) != requested
                or sp.get("resolution", r.cell.resolution) != r.cell.resolution,
                "resolution": sp.get("resolution"),
                "precision": sp.get("precision"),
                "compute_dtype": sp.get("compute_dtype") or "—",
                "memory_format": sp.get("memory_format")
                or ("channels_last" if sp.get("channels_last") else "contiguous"),
                "warmup": sp.get("warmup_iters"),
                "settled": sp.get("warmup_settled"),
                "timing_method": sp.get("timing_method"),
                "repeats": sp.get("repeats"),
                "isolation": (r.isolation or "—")
                + (" (ray" + (f", retried {r.retries}x" if r.retries else "") + ")" if r.executor == "ray" else ""),
                "fallback": sp.get("fallback") or "",
                "compiled": _compiled_text(sp),
            }
        )
    if not rows:
        return None
    return {
        "rows": rows,
        "compiled": [row for row in rows if row["compiled"]],
        "fallbacks": [row for row in rows if row["fallback"] or row["changed"]],
        "unsettled": sum(row["settled"] is False for row in rows),
    }


def _compiled_text(sp: dict) -> str | None:
    """A compiled cell's first call (timed apart), recompilations and graph breaks (bench.measure.compiled)."""
    if sp.get("compile_error"):
        return f"compile failed, timed eager (compile_fallback): {sp['compile_error']}"
    first = sp.get(COMPILE_FIRST_CALL.key)
    if first is None:
        return None
    return (
        f"first call {first:.3g} s (not timed), {sp.get(RECOMPILATIONS.key)} recompilations, "
        f"{sp.get(GRAPH_BREAKS.key)} graph breaks"
    )


# -- failures and reproduction ---------------------------------------------------------------------------


@register_section("failures", "Failed and skipped cells", 80)
def failures(ctx: ReportContext) -> dict | None:
    rows = [
        {"id": r.id, "label": r.cell.label(), "status": r.status, "reason": (r.reason or "").strip()}
        for r in ctx.current.results
        if r.status != "ok"
    ]
    # a cell can be ok while one of its measurements was skipped (e.g. speed at a precision the device lacks)
    for r in ctx.current.results:
        if r.status != "ok":
            continue
        for name, data in r.measurements.items():
            if isinstance(data, dict) and data.get("status") in ("skipped", "failed"):
                rows.append(
                    {
                        "id": r.id,
                        "label": f"{r.cell.label()} [{name}]",
                        "status": data["status"],
                        "reason": str(data.get("reason") or "").strip(),
                    }
                )
    return {"rows": rows} if rows else None


@register_section("reproduce", "How to reproduce", 90)
def reproduce(ctx: ReportContext) -> dict:
    run = ctx.current
    argv = run.env.get("command") or []
    if argv:
        argv = ["bench", *argv[1:]] if str(argv[0]).endswith("bench") or "bench" in str(argv[0]) else list(argv)
        command = shlex.join(str(a) for a in argv)
    else:
        source = run.suite.get("source") or f"{run.run_dir}/suite.yaml"
        command = f"bench run {shlex.quote(str(source))}" + (
            f" --profile {run.suite['profile']}" if run.suite.get("profile") else ""
        )
    return {
        "command": command,
        "commit": run.env.get("git_commit") or "unknown",
        "suite_yaml": run.suite_yaml,
        "suite_file": f"{run.run_dir}/suite.yaml",
        "report_command": "bench report " + " ".join(shlex.quote(str(rd.run_dir)) for rd in ctx.runs),
    }
