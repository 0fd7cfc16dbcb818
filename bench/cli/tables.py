"""The console tables of a run's results: one row a cell, the paper comparison, notes, the seed summary."""

from __future__ import annotations

from collections.abc import Callable

from rich.markup import escape
from rich.table import Table

from bench.cli.console import (
    console,
    fmt,
)
from bench.core.metric import Metric
from bench.core.result import SYNTHETIC_NOTICE, synthetic_datasets
from bench.measure.catalogue import (
    ACCURACY,
    EPOCHS_RUN,
    GFLOPS,
    GMACS,
    GMACS_ATTENTION,
    LATENCY_MEDIAN,
    LATENCY_P99,
    MACRO_F1,
    MACS,
    MEMORY_ADDED,
    PARAMS,
    PEAK_MEMORY,
    THROUGHPUT,
    TRAIN_THROUGHPUT,
    memory_headline,
)
from bench.measure.published import efficientnet_paper_rows, paper_figure


def _metric_column(metric: Metric, scale: float = 1.0, header: str | None = None) -> tuple[str, Callable, str]:
    """A column of one catalogue metric: its label (or `header`), its value formatted, its measurement."""

    def value(r) -> str:
        v = metric.number(r)
        return fmt(v / scale) if v is not None else "—"

    return (header or metric.label, value, metric.measurement)


def _memory(r) -> str:
    """The cell's headline memory (bench.measure.catalogue.memory_headline): on a CPU what the cell added, with
    the process's RSS as context; on a GPU the peak allocated."""
    headline = memory_headline(r)
    value = headline.number(r)
    if value is None:
        return "—"
    if headline is MEMORY_ADDED:
        rss = PEAK_MEMORY.number(r)
        return f"{fmt(value)} added" + (f" (RSS {fmt(rss)})" if rss is not None else "")
    return f"{fmt(value)} peak"


# (header, value getter, measurement it needs or None); a column shows only when some cell has it.
_COLUMNS: list[tuple[str, Callable, str | None]] = [
    ("id", lambda r: r.id, None),
    (
        "model",
        lambda r: r.cell.model + (" +cl" if r.cell.channels_last else "") + (" +compile" if r.cell.compile else ""),
        None,
    ),
    ("res", lambda r: str(r.cell.resolution), None),
    ("bs", lambda r: str(r.cell.batch_size), None),
    ("prec", lambda r: r.cell.precision, None),
    ("strategy", lambda r: r.cell.strategy, "train"),
    ("seed", lambda r: str(r.cell.seed), "train"),
    (
        "status",
        lambda r: f"[{ {'ok': 'green', 'failed': 'red', 'skipped': 'yellow'}.get(r.status, 'white') }]{r.status}[/]",
        None,
    ),
    _metric_column(PARAMS, 1e6, "params (M)"),
    *(_metric_column(m) for m in (GMACS, GFLOPS, THROUGHPUT, LATENCY_MEDIAN, LATENCY_P99)),
    ("memory MB", lambda r: _memory(r), PEAK_MEMORY.measurement),
    *(_metric_column(m) for m in (ACCURACY, MACRO_F1, EPOCHS_RUN, TRAIN_THROUGHPUT)),
    ("reason", lambda r: escape(r.reason or ""), None),
]
_LEFT = {"id", "model", "prec", "strategy", "swept", "status", "reason"}


def results_table(results: list, title: str) -> Table:
    present = {name for r in results for name in r.cell.measure}
    columns = [c for c in _COLUMNS if c[2] is None or c[2] in present]
    if any(r.cell.axes for r in results):  # dotted-path axes (train.optimizer, model.dropout, ...)
        swept = (
            "swept",
            lambda r: escape(", ".join(f"{k.removeprefix('train.')}={v}" for k, v in r.cell.axes.items())),
            None,
        )
        columns.insert(next(i for i, c in enumerate(columns) if c[0] == "status"), swept)
    table = Table(title=escape(title), show_lines=False)
    for header, _, _ in columns:
        table.add_column(header, overflow="fold", justify="left" if header in _LEFT else "right")
    for r in results:
        table.add_row(*(getter(r) for _, getter, _ in columns))
    return table


def _synthetic_banner(results: list) -> str | None:
    datasets = synthetic_datasets(results)
    if not datasets:
        return None
    return f"[bold yellow]SYNTHETIC DATA:[/] {SYNTHETIC_NOTICE}: " + escape("; ".join(datasets))


def _paper_table(results: list) -> Table | None:
    """EfficientNets at native resolution beside the paper's Table 2 (params, MACs), with ratios."""
    rows = efficientnet_paper_rows(results)
    if not rows:
        return None
    table = Table(
        title="EfficientNet vs the paper's Table 2 (the paper's 'FLOPs' are MACs; it rounds to 2 significant figures)"
    )
    for col in ("model", "res", "params (M)", "paper", "ratio", "GMACs", "paper", "ratio"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            str(r["resolution"]),
            f"{r[PARAMS.key] / 1e6:.2f}",
            paper_figure(r["paper_params"] / 1e6),
            f"{r['params_ratio']:.3f}",
            f"{r[MACS.key] / 1e9:.3f}",
            paper_figure(r["paper_macs"] / 1e9),
            f"{r['macs_ratio']:.3f}",
        )
    return table


def _attention_note(results: list) -> str | None:
    parts, seen = [], set()
    for r in results:
        extra = GMACS_ATTENTION.number(r) or 0
        key = (r.cell.model, r.cell.resolution)
        if extra > 0 and key not in seen:
            seen.add(key)
            parts.append(
                f"{r.cell.model}@{r.cell.resolution}: {GMACS.number(r):.3f} GMACs, of which {extra:.3f} from fused attention ops"
            )
    if not parts:
        return None
    return "Attention counted (torch's FlopCounterMode and fvcore alone count these as 0): " + "; ".join(parts)


def print_summary_tables(results: list) -> None:
    banner = _synthetic_banner(results)
    if banner:
        console.print(banner)
    for r in results:
        note = r.measurements.get("train", {}).get("data_notes")
        if note:
            console.print(f"[yellow]note:[/] cell {r.id} ({escape(r.cell.label())}): {escape(note)}", highlight=False)
    paper = _paper_table(results)
    if paper is not None:
        console.print(paper)
    note = _attention_note(results)
    if note:
        console.print(note)


def print_seed_summary(results: list) -> None:
    """Cells differing only by seed -> mean, std, 95% CI, printed when seeds repeat (as the run's summary.csv,
    which bench.api.execute writes under the run's lock)."""
    from bench.store.aggregate import aggregate_seeds  # deferred: imports scipy

    rows = aggregate_seeds(results)
    if not rows:
        return
    f1, acc = MACRO_F1.path, ACCURACY.path  # summary.csv's columns: <metric path>.<statistic>
    multi = [r for r in rows if len(r["seeds"].split(";")) > 1 and f"{f1}.mean" in r]
    if not multi:
        return
    table = Table(title="over seeds: macro-F1 mean ± std [95% CI]")
    for col in ("model", "res", "prec", "strategy", "seeds", MACRO_F1.label, ACCURACY.label):
        table.add_column(col)
    for r in multi:
        f1_text = f"{r[f'{f1}.mean']:.3f} ± {r[f'{f1}.std']:.3f} [{r[f'{f1}.ci_low']:.3f}, {r[f'{f1}.ci_high']:.3f}]"
        acc_text = f"{r[f'{acc}.mean']:.3f} ± {r[f'{acc}.std']:.3f}"
        table.add_row(r["model"], str(r["resolution"]), r["precision"], r["strategy"], r["seeds"], f1_text, acc_text)
    console.print(table)


def print_fidelity_notes(results) -> None:
    """Say so when a cell's FLOP count is incomplete or it ran otherwise than asked (an opted-in fallback)."""
    for r in results:
        prof, speed = r.measurements.get("profile") or {}, r.measurements.get("speed") or {}
        if prof.get("flops_coverage_flag"):
            console.print(
                f"[yellow]FLOP count incomplete for {escape(r.cell.label())}: ops without a formula "
                f"({escape(', '.join(prof.get('uncounted_ops') or []))}) may be {prof['uncounted_share'] * 100:.1f}% of its work[/]"
            )
        if speed.get("fallback"):
            console.print(
                f"[yellow]{escape(r.cell.label())} ran at batch {speed.get('batch_size')}: {escape(speed['fallback'])}[/]"
            )
