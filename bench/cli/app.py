"""The `bench` command line (Typer + rich).

Bad input prints one short error per problem (file:line: field: message — hint) and exits with code 2,
with no Python traceback unless `--debug` is given. `bench run` exits 1 when any cell failed.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.core.errors import BenchError, InputError, StorageError
from bench.suite.expand import expand
from bench.suite.load import find_suite, load_suite
from bench.core.numbers import format_number
from bench.core.result import SYNTHETIC_NOTICE, synthetic_datasets
from bench.models.published import efficientnet_paper_rows, paper_figure
from bench.store.aggregate import aggregate_seeds
from bench.store.run_store import RunStore
from bench.plan.cost import total
from bench.core.cell import Cell
from bench.report import render_report
from bench.execution.epochs import shared_training_groups
from bench.models import get_entry
from bench.core.files import atomic_write_text
from bench.core.yamlfile import loads_yaml
from bench.models import get_entry, list_models
from bench.suite.load import load_suite
from bench.store.baselines import save_baseline
from bench.store.baselines import load_repeats, resolve_run_or_baseline
from bench.gate.regression import compare_results, hardware_mismatch, markdown_summary
from bench.measure.catalogue import thresholds_from
from bench.report.data import load_run

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark and compare image-classification models.")
list_app = typer.Typer(no_args_is_help=True, help="List registered models or available suites.")
app.add_typer(list_app, name="list")

console = Console()
if not console.is_terminal:  # piped or in CI: wide enough that tables are not cut
    console = Console(width=200)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)
_STATE = {"debug": False}

_PACKAGE_SUITES = Path(__file__).resolve().parent.parent / "suites"
# suites/seeds: the founding experiments, one suite each (efficientnet_from_scratch, small_cnn_cifar, ...)
SUITE_DIRS = [Path.cwd() / "suites", Path.cwd() / "suites" / "seeds", _PACKAGE_SUITES, _PACKAGE_SUITES / "seeds"]
FLOPS_NOTE = "MACs = multiply-accumulates; FLOPs = 2 × MACs (published 'FLOPs' tables usually give MACs)."


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors.")) -> None:
    _STATE["debug"] = debug


def _fail_input(exc: InputError) -> None:
    if _STATE["debug"]:
        raise exc
    for line in str(exc).splitlines():
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def _load(suite: str, profile: Optional[str], overrides: Optional[list[str]] = None):
    path = find_suite(suite, SUITE_DIRS)
    loaded = load_suite(path, profile, overrides)
    return loaded, expand(loaded)


def _fmt(value: Any, digits: int = 3) -> str:
    return format_number(value, digits)


def _m(r, measurement: str, key: str):
    return r.measurements.get(measurement, {}).get(key)


# (header, value getter, measurement it needs or None); a column shows only when some cell has it.
_COLUMNS = [
    ("id", lambda r: r.id, None),
    ("model", lambda r: r.cell.model + (" +cl" if r.cell.channels_last else "") + (" +compile" if r.cell.compile else ""), None),
    ("res", lambda r: str(r.cell.resolution), None),
    ("bs", lambda r: str(r.cell.batch_size), None),
    ("prec", lambda r: r.cell.precision, None),
    ("strategy", lambda r: r.cell.strategy, "train"),
    ("seed", lambda r: str(r.cell.seed), "train"),
    ("status", lambda r: f"[{ {'ok': 'green', 'failed': 'red', 'skipped': 'yellow'}.get(r.status, 'white') }]{r.status}[/]", None),
    ("params (M)", lambda r: _fmt(_m(r, "profile", "params") / 1e6) if _m(r, "profile", "params") else "—", "profile"),
    ("GMACs", lambda r: _fmt(_m(r, "profile", "gmacs")), "profile"),
    ("GFLOPs", lambda r: _fmt(_m(r, "profile", "gflops")), "profile"),
    ("img/s", lambda r: _fmt(_m(r, "speed", "throughput_img_s")), "speed"),
    ("p50 ms", lambda r: _fmt(_m(r, "speed", "latency_median_ms")), "speed"),
    ("p99 ms", lambda r: _fmt(_m(r, "speed", "latency_p99_ms")), "speed"),
    ("peak MB", lambda r: _fmt(_m(r, "speed", "peak_memory_mb")), "speed"),
    ("acc", lambda r: _fmt(_m(r, "train", "accuracy")), "train"),
    ("macro-F1", lambda r: _fmt(_m(r, "train", "macro_f1")), "train"),
    ("epochs", lambda r: _fmt(_m(r, "train", "epochs_run")), "train"),
    ("train img/s", lambda r: _fmt(_m(r, "train", "train_img_s")), "train"),
    ("reason", lambda r: escape(r.reason or ""), None),
]
_LEFT = {"id", "model", "prec", "strategy", "swept", "status", "reason"}


def _results_table(results: list, title: str) -> Table:
    present = {name for r in results for name in r.cell.measure}
    columns = [c for c in _COLUMNS if c[2] is None or c[2] in present]
    if any(r.cell.axes for r in results):  # dotted-path axes (train.optimizer, model.dropout, ...)
        swept = ("swept", lambda r: escape(", ".join(f"{k.removeprefix('train.')}={v}" for k, v in r.cell.axes.items())), None)
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
    table = Table(title="EfficientNet vs the paper's Table 2 (the paper's 'FLOPs' are MACs; it rounds to 2 significant figures)")
    for col in ("model", "res", "params (M)", "paper", "ratio", "GMACs", "paper", "ratio"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], str(r["resolution"]), f"{r['params'] / 1e6:.2f}", paper_figure(r["paper_params"] / 1e6),
                      f"{r['params_ratio']:.3f}", f"{r['macs'] / 1e9:.3f}", paper_figure(r["paper_macs"] / 1e9), f"{r['macs_ratio']:.3f}")
    return table


def _attention_note(results: list) -> str | None:
    parts, seen = [], set()
    for r in results:
        prof = r.measurements.get("profile", {})
        extra = prof.get("gmacs_attention_handles") or 0
        key = (r.cell.model, r.cell.resolution)
        if extra > 0 and key not in seen:
            seen.add(key)
            parts.append(f"{r.cell.model}@{r.cell.resolution}: {prof['gmacs']:.3f} GMACs, of which {extra:.3f} from fused attention ops")
    if not parts:
        return None
    return "Attention counted (torch's FlopCounterMode and fvcore alone count these as 0): " + "; ".join(parts)


def _print_summary_tables(results: list) -> None:
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


def _print_seed_summary(results: list, store) -> None:
    """summary.csv: cells differing only by seed -> mean, std, 95% CI; printed when seeds repeat."""
    rows = aggregate_seeds(results)
    if not rows:
        return
    store.write_rows_csv("summary.csv", rows)
    multi = [r for r in rows if len(r["seeds"].split(";")) > 1 and "train.macro_f1.mean" in r]
    if not multi:
        return
    table = Table(title="over seeds: macro-F1 mean ± std [95% CI]")
    for col in ("model", "res", "prec", "strategy", "seeds", "macro-F1", "accuracy"):
        table.add_column(col)
    for r in multi:
        f1 = f"{r['train.macro_f1.mean']:.3f} ± {r['train.macro_f1.std']:.3f} [{r['train.macro_f1.ci_low']:.3f}, {r['train.macro_f1.ci_high']:.3f}]"
        acc = f"{r['train.accuracy.mean']:.3f} ± {r['train.accuracy.std']:.3f}"
        table.add_row(r["model"], str(r["resolution"]), r["precision"], r["strategy"], r["seeds"], f1, acc)
    console.print(table)


class _RichProgress:
    """Progress bar: current cell, done/failed counts, ETA."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self.progress, self.task = progress, task
        self.ok = self.failed = self.skipped = 0

    def _counts(self) -> str:
        return f"ok {self.ok} · failed {self.failed} · skipped {self.skipped}"

    def cell_started(self, cell, index: int, total: int) -> None:
        self.progress.update(self.task, description=escape(cell.label()), counts=self._counts())

    def cell_finished(self, result, reused: bool) -> None:
        self.ok += result.status == "ok"
        self.failed += result.status == "failed"
        self.skipped += result.status == "skipped"
        if result.status == "failed" and not reused:
            self.progress.console.print(f"[red]cell {result.id} ({result.cell.label()}) failed:[/] {escape(result.reason or '')}", highlight=False)
        self.progress.update(self.task, advance=1, counts=self._counts())

    def notice(self, message: str) -> None:
        self.progress.console.print(f"[yellow]{escape(message)}[/]", highlight=False)


@app.command()
def run(
    suite: Optional[str] = typer.Argument(None, help="Suite file, or the name of one in suites/ (e.g. smoke)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Named profile of the suite (e.g. quick, full)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default results/<suite>/<run-id>). An existing one is resumed."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Resume an interrupted run directory from its own plan: finished cells are kept, failed and unfinished ones run."),
    results_root: Path = typer.Option(Path("results"), "--results-root", help="Where new run directories go."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="Override a field: --set settings.train.epochs=3 (dotted key, YAML value); repeatable."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not render report.html / report.md at the end."),
    isolation: Optional[str] = typer.Option(None, "--isolation", help="auto (a fresh process per cell that measures speed; the default), process (every cell), none (all in this process). Default: the suite's `isolation`."),
    executor_name: Optional[str] = typer.Option(None, "--executor", help="local (this machine, one cell after the other; the default) or ray (each cell a task on a Ray cluster: the suite's `ray:` options, e.g. --set ray.address=auto). Default: the suite's `executor`."),
) -> None:
    """Run a suite: every cell's measurements, recorded under results/, then its report."""
    try:
        if isolation is not None and isolation not in ("auto", "process", "none"):
            raise InputError(f"unknown isolation mode '{isolation}'", field="--isolation", hint="use auto, process or none")
        from bench.platform.device import resolve_device  # deferred: imports torch
        from bench.platform.env import capture_env  # deferred: imports torch
        from bench.execution.executors import make_executor  # deferred: imports torch
        from bench.execution.sweep import run_cells  # deferred: imports torch
        if resume is not None:
            if suite or out or profile or overrides:
                raise InputError("--resume takes the run directory's own plan", field="--resume",
                                 hint="give either SUITE (with --out to resume into a folder) or --resume RUN_DIR alone")
            planned = _resume_plan(resume)
        elif suite is None:
            raise InputError("no suite given", hint="bench run SUITE (e.g. bench run suites/artists.yaml) or bench run --resume RUN_DIR")
        else:
            loaded, cells = _load(suite, profile, overrides)
            planned = {"name": loaded.name, "profile": loaded.profile, "device": loaded.device, "base_dir": loaded.base_dir(),
                       "cells": cells, "resolved": loaded.resolved_dict(),
                       "isolation": loaded.isolation, "memory_limit_mb": loaded.memory_limit_mb, "threads": loaded.threads,
                       "executor": loaded.executor, "ray": loaded.ray.model_dump(),
                       "yaml": loaded.path.read_text(encoding="utf-8") if loaded.path is not None else None}
        cells = planned["cells"]
        _set_threads(planned.get("threads"))
        device = resolve_device(planned["device"])
        executor = make_executor(executor_name or planned.get("executor") or "local", isolation=isolation or planned.get("isolation") or "auto",
                                 memory_limit_mb=planned.get("memory_limit_mb"), ray_options=planned.get("ray"))
        if resume is not None:
            store = RunStore(resume)
        else:
            store = RunStore.create(out) if out else RunStore.new_in(results_root, planned["name"])
    except InputError as exc:
        _fail_input(exc)
        return
    try:
        if resume is None:
            store.write_json("suite.resolved.json", planned["resolved"])
            if planned["yaml"] is not None:
                store.write_text("suite.yaml", planned["yaml"])
        env = capture_env(device, seeds=sorted({c.seed for c in cells}))
        env["executor"] = executor.describe()  # how this (or this resumed) run executed its cells
        store.write_json("env.json", env)
    except StorageError as exc:
        if _STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))} — free space or fix permissions", highlight=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None
    estimates = _run_estimates(cells, device, planned["base_dir"], results_root)
    loaded_name, loaded_profile = planned["name"], planned["profile"]
    console.print(
        f"[bold]{loaded_name}[/]: {len(cells)} cells on {device}"
        + (f" (executor ray, cluster {escape(executor.address or 'local')})" if executor.name == "ray" else "")
        + (f", profile [cyan]{loaded_profile}[/]" if loaded_profile else "")
        + f" → {store.run_dir}"
    )
    columns = [
        TextColumn("[progress.description]{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    resume_cmd = f"bench run --resume {shlex.quote(str(store.run_dir))}"
    run_started = time.perf_counter()
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("starting", total=len(cells), counts="")
            summary = run_cells(cells, store, device, progress=_RichProgress(bar, task), base_dir=planned["base_dir"], executor=executor)
        _record_estimates(store, cells, summary.results, estimates, time.perf_counter() - run_started)
    except KeyboardInterrupt:
        # Ctrl-C: the current cell is abandoned (nothing of it is written), finished cells stay on disk.
        finished = sum(1 for c in cells if (r := store.read_cell(c.id)) is not None and r.status in ("ok", "skipped"))
        err_console.print(f"[bold yellow]interrupted:[/] {finished} of {len(cells)} cells finished and kept in "
                          f"{escape(str(store.run_dir))}; resume with: {escape(resume_cmd)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    except StorageError as exc:
        if _STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))} — free space (or fix permissions), then resume with: "
                          f"{escape(resume_cmd)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None
    except InputError as exc:  # e.g. another bench run holds the directory's lock
        _fail_input(exc)
        return
    console.print(_results_table(summary.results, f"{loaded_name} — {store.run_dir}"))
    _print_summary_tables(summary.results)
    _print_seed_summary(summary.results, store)
    console.print(FLOPS_NOTE + " Throughput = batch size / median batch latency.")
    _print_fidelity_notes(summary.results)
    console.print(
        f"{summary.count('ok')} ok, {summary.failed} failed, {summary.count('skipped')} skipped"
        + (f" ({summary.reused} reused from an earlier run)" if summary.reused else "")
        + f"; results: {store.run_dir / 'results.csv'}"
    )
    _render_after_run(store.run_dir, no_report)
    if summary.failed:
        raise typer.Exit(code=1)


def _run_estimates(cells: list, device, base_dir: Path, results_root: Path):
    """The plan's estimates for a run, from the cached calibration only (a run never calibrates: that
    would add to its own time); None without one, or if anything goes wrong (an estimate never fails a run)."""
    try:
        from bench.plan.calibration import default_path, load_cached, machine_key  # deferred: imports torch
        from bench.plan.workload import default_cache_path, estimate_cells  # deferred: imports torch

        cal = load_cached(default_path(results_root), machine_key(device))
        if cal is None:
            return None
        return {"calibration": cal, "cells": estimate_cells(cells, base_dir, cal, device_type=device.type,
                                                             cache_path=default_cache_path(results_root))}
    except Exception:  # noqa: BLE001
        if _STATE["debug"]:
            raise
        return None


def _record_estimates(store, cells: list, results: list, estimates, wall_s: float) -> None:
    """estimates.json: each cell's estimate beside its measured duration, and the run's wall time beside
    the estimated total, so the cost model can be checked against what happened."""
    if estimates is None:
        return
    by_id = {r.id: r for r in results}
    rows = []
    for cell, est in zip(cells, estimates["cells"]):
        r = by_id.get(cell.id)
        rows.append({"id": cell.id, "label": cell.label(), "estimate_s": est["total"], "estimate_parts_s": est,
                     "duration_s": r.duration_s if r is not None else None, "status": r.status if r is not None else None})
    cal = estimates["calibration"]
    doc = {"estimate_total_s": total(estimates["cells"], cal), "wall_s": wall_s, "cells": rows, "calibration_key": cal.key}
    try:
        store.write_json("estimates.json", doc)
    except StorageError:
        return
    console.print(f"time: {_duration(wall_s)} measured, {_duration(doc['estimate_total_s'])} estimated by `bench plan` "
                  f"(per cell in {store.run_dir / 'estimates.json'})", highlight=False)


def _print_fidelity_notes(results) -> None:
    """Say so when a cell's FLOP count is incomplete or it ran otherwise than asked (an opted-in fallback)."""
    for r in results:
        prof, speed = r.measurements.get("profile") or {}, r.measurements.get("speed") or {}
        if prof.get("flops_coverage_flag"):
            console.print(f"[yellow]FLOP count incomplete for {escape(r.cell.label())}: ops without a formula "
                          f"({escape(', '.join(prof.get('uncounted_ops') or []))}) may be {prof['uncounted_share'] * 100:.1f}% of its work[/]")
        if speed.get("fallback"):
            console.print(f"[yellow]{escape(r.cell.label())} ran at batch {speed.get('batch_size')}: {escape(speed['fallback'])}[/]")


def _resume_plan(run_dir: Path) -> dict[str, Any]:
    """What a run directory says about itself: its planned cells (plan.json) and its suite."""
    store = RunStore(run_dir)
    if not (run_dir / "plan.json").is_file():
        raise InputError("not a run directory (no plan.json)", file=run_dir, hint="pass a folder written by `bench run`")
    try:
        plan = store.read_json("plan.json")
        cells = [Cell.from_dict(c) for c in plan["cells"]]
        resolved = store.read_json("suite.resolved.json") if (run_dir / "suite.resolved.json").is_file() else {}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable plan ({exc})", file=run_dir / "plan.json", hint="start a new run instead") from None
    source = resolved.get("source")
    return {"name": resolved.get("name") or run_dir.parent.name, "profile": resolved.get("profile"), "device": resolved.get("device", "auto"),
            "base_dir": Path(source).resolve().parent if source else Path.cwd(), "cells": cells,
            "isolation": resolved.get("isolation", "auto"), "memory_limit_mb": resolved.get("memory_limit_mb"),
            "executor": resolved.get("executor", "local"), "ray": resolved.get("ray"),
            "threads": resolved.get("threads")}


def _set_threads(threads: int | None) -> None:
    """A suite's `threads:` sets torch's thread count for the run (its cells' child processes inherit it)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _render_after_run(run_dir: Path, skip: bool) -> None:
    """The run's own report, rendered from what it wrote; a report error never fails the run."""
    if skip:
        return
    try:
        paths = render_report([run_dir])
    except Exception as exc:  # noqa: BLE001 - the results are safe on disk; say why the report is missing
        if _STATE["debug"]:
            raise
        err_console.print(f"[yellow]report not rendered:[/] {escape(type(exc).__name__ + ': ' + str(exc))} (retry with `bench report {run_dir}`)")
        return
    console.print("report: " + ", ".join(str(p) for p in paths.values()))


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `bench run`; with several, the first is the baseline the others are compared with."),
    formats: str = typer.Option("html,md", "--format", "-f", help="Comma-separated: html, md."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.html / report.md (default: the last run directory)."),
) -> None:
    """Render a comparison report (self-contained HTML and GitHub Markdown) from results on disk."""
    try:
        paths = render_report(run_dirs, out, [f.strip() for f in formats.split(",") if f.strip()])
    except InputError as exc:
        _fail_input(exc)
        return
    for fmt, path in paths.items():
        console.print(f"{fmt}: {path}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _estimates(cells: list, device, base_dir: Path, results_root: Path, *, recalibrate: bool = False, calibrate_missing: bool = True):
    """(per-cell estimates, calibration) or (None, None) when no calibration is cached and none may be measured."""
    from bench.plan.calibration import default_path, get_calibration, load_cached, machine_key  # deferred: imports torch
    from bench.plan.workload import default_cache_path, estimate_cells  # deferred: imports torch

    path = default_path(results_root)
    if not calibrate_missing and load_cached(path, machine_key(device)) is None:
        return None, None
    precisions = tuple(dict.fromkeys(["fp32", *(c.precision for c in cells)]))
    cal, _ = get_calibration(device, path, precisions=precisions, recalibrate=recalibrate,
                             log=lambda m: err_console.print(f"[dim]{escape(m)}[/]", highlight=False))
    return estimate_cells(cells, base_dir, cal, device_type=device.type, cache_path=default_cache_path(results_root)), cal


@app.command()
def plan(
    suite: str = typer.Argument(..., help="Suite file, or the name of one in suites/."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Named profile of the suite."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="Override a field: --set settings.train.epochs=3 (dotted key, YAML value); repeatable."),
    estimate: bool = typer.Option(True, "--estimate/--no-estimate", help="Estimate each cell's time from its FLOPs and a measured calibration of this machine."),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Measure this machine's calibration again (cached in results/.calibration.json per device, torch version and thread count)."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan (cells and estimates) as JSON instead of a table."),
    results_root: Path = typer.Option(Path("results"), "--results-root", help="Where the calibration and FLOP caches live."),
) -> None:
    """Dry run: the number of cells, a table of them and an estimate of each one's time; nothing is executed."""
    import json as _json

    try:
        loaded, cells = _load(suite, profile, overrides)
        device: Any = loaded.device  # without estimates, the suite's own setting: no torch needed
        estimates, cal = None, None
        if estimate:
            from bench.platform.device import resolve_device  # deferred: estimates need torch, a dry plan does not

            _set_threads(loaded.threads)  # the calibration is per thread count
            device = resolve_device(loaded.device)
            estimates, cal = _estimates(cells, device, loaded.base_dir(), results_root, recalibrate=recalibrate)
    except InputError as exc:
        _fail_input(exc)
        return
    served = sum(len(g) - 1 for g in shared_training_groups(cells))
    total_s = None
    if estimates is not None:
        total_s = total(estimates, cal)
    if json_out:
        rows = [{**c.to_dict(), "label": c.label(), **({"estimate_s": e["total"], "estimate_parts_s": e} if estimates else {})}
                for c, e in zip(cells, estimates or [None] * len(cells))]
        doc = {"suite": loaded.name, "profile": loaded.profile, "device": str(device), "cells": rows,
               "estimate_total_s": total_s, "calibration": cal.to_dict() if cal else None}
        sys.stdout.write(_json.dumps(doc, separators=(",", ":")) + "\n")
        return
    if len(cells) <= PLAN_TABLE_MAX_ROWS:
        console.print(_plan_table(loaded, cells, estimates))
    else:
        console.print(_plan_summary(loaded, cells, estimates))
    console.print(f"{len(cells)} cells" + (f"; {served} of them read off a longer run of the same config (epoch sweep: one training serves them)" if served else ""))
    if total_s is not None:
        key = cal.key
        console.print(f"estimated time: [bold]{_duration(total_s)}[/] on {escape(str(key.get('device_name')))} "
                      f"({key.get('threads')} threads; {_duration(cal.run_fixed_s)} start-up included). Training assumes every "
                      "epoch runs (early stopping only shortens it); calibration cached in "
                      f"{escape(str(results_root / '.calibration.json'))} (--recalibrate to measure again).", highlight=False)


# a plan longer than this is summarised per model (bench plan --json lists every cell)
PLAN_TABLE_MAX_ROWS = 200


def _plan_table(loaded, cells: list, estimates) -> Table:
    table = Table(title=f"{loaded.name}" + (f" (profile {loaded.profile})" if loaded.profile else ""))
    swept = list(dict.fromkeys(k for c in cells for k in c.axes))  # dotted-path axes, e.g. train.optimizer
    est_cols = ("est. speed", "est. train", "est. total") if estimates else ()
    cudnn = any(c.cudnn_benchmark is not None for c in cells)
    for col in ("#", "id", "model", "family", "res", "bs", "precision", "channels_last", "compile", *(["cudnn_benchmark"] if cudnn else []),
                "strategy", "seed", *swept, "measure", *est_cols):
        table.add_column(col, justify="right" if col.startswith("est.") else "left")
    for i, c in enumerate(cells, 1):
        strategy = c.strategy if "train" in c.measure else "—"
        est: tuple[str, ...] = ()
        if estimates:
            e = estimates[i - 1]
            est = (_duration(e["speed"]) if "speed" in c.measure else "—",
                   _duration(e["train"] + e["data"]) if "train" in c.measure else "—", _duration(e["total"]))
        table.add_row(str(i), c.id, c.model, c.family, str(c.resolution), str(c.batch_size), c.precision, str(c.channels_last), str(c.compile),
                      *([str(c.cudnn_benchmark)] if cudnn else []), strategy, str(c.seed),
                      *(str(c.axes.get(k, c.value(k))) for k in swept), ",".join(c.measure), *est)
    return table


def _plan_summary(loaded, cells: list, estimates) -> Table:
    """One row per model: how many cells, and the values each axis takes among them."""
    title = f"{loaded.name}" + (f" (profile {loaded.profile})" if loaded.profile else "")
    table = Table(title=f"{title}: {len(cells)} cells, summarised per model (bench plan --json lists every cell)")
    for col in ("model", "cells", "resolutions", "batch sizes", "precisions", "strategies", "seeds", *(["est. total"] if estimates else [])):
        table.add_column(col, justify="right" if col in ("cells", "est. total") else "left")
    by_model: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        by_model.setdefault(c.model, []).append(i)
    for model, idx in by_model.items():
        group = [cells[i] for i in idx]

        def values(attr: str, group: list = group) -> str:
            seen = list(dict.fromkeys(str(getattr(c, attr)) for c in group))
            return ", ".join(seen[:6]) + (f", … ({len(seen)})" if len(seen) > 6 else "")

        est = [_duration(sum(estimates[i]["total"] for i in idx))] if estimates else []
        table.add_row(model, str(len(group)), values("resolution"), values("batch_size"), values("precision"), values("strategy"),
                      values("seed"), *est)
    return table


@app.command("cpu-fastpaths")
def cpu_fastpaths(
    models: str = typer.Option("resnet18,mobilenet_v2,efficientnet_b0", "--models", help="Comma-separated registry names."),
    resolutions: str = typer.Option("64,224", "--resolutions", help="Comma-separated resolutions."),
    modes: str = typer.Option("inference,train", "--modes", help="inference, train or both."),
    variants: str = typer.Option(",".join(["baseline", "channels_last", "threads=1", "compile", "bf16"]), "--variants",
                                 help="baseline (fp32, contiguous, default threads, eager) and changes to it: channels_last, threads=1, compile, bf16."),
    rounds: int = typer.Option(2, "--rounds", help="Round-robin rounds (each variant once per round, beside the baseline)."),
    min_time_s: float = typer.Option(0.5, "--min-time", help="Seconds of timed steps per variant and round."),
    out: Path = typer.Option(Path("results/cpu-fastpaths.json"), "--out", "-o", help="Where the table is written (JSON)."),
) -> None:
    """Measure what speeds up inference and training on this CPU: channels_last, thread count, torch.compile, bf16.

    Each variant is timed round-robin with the baseline and reported as a throughput ratio (> 1: faster)."""
    import json as _json

    import torch

    from bench.platform.env import capture_env  # deferred: imports torch
    from bench.tools.fastpaths import VARIANTS, measure_fastpaths  # deferred: imports torch
    try:
        names = [m.strip() for m in models.split(",") if m.strip()]
        for name in names:
            get_entry(name)
        res = [int(r) for r in resolutions.split(",") if r.strip()]
        mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
        variant_list = tuple(v.strip() for v in variants.split(",") if v.strip())
        bad = [v for v in variant_list if v not in VARIANTS] + [m for m in mode_list if m not in ("inference", "train")]
        if bad:
            raise InputError(f"unknown variant or mode: {', '.join(bad)}", hint=f"variants: {', '.join(VARIANTS)}; modes: inference, train")
        if "baseline" not in variant_list:
            variant_list = ("baseline", *variant_list)
    except (InputError, ValueError) as exc:
        _fail_input(exc if isinstance(exc, InputError) else InputError(str(exc), field="--resolutions"))
        return
    rows = measure_fastpaths(names, res, modes=mode_list, variants=variant_list, rounds=rounds, min_time_s=min_time_s,
                             log=lambda m: err_console.print(f"[dim]{escape(m)}[/]", highlight=False))
    table = Table(title=f"CPU fast paths: throughput ratio to fp32, contiguous, {torch.get_num_threads()} threads, eager (> 1: faster)")
    variant_cols = [v for v in variant_list if v != "baseline"]
    for col in ("model", "res", "mode", "bs", "baseline img/s", *variant_cols):
        table.add_column(col, justify="left" if col in ("model", "mode") else "right")
    keyed = {(r.model, r.resolution, r.mode, r.variant): r for r in rows}
    for name in names:
        for r_ in res:
            for mode in mode_list:
                base = keyed[(name, r_, mode, "baseline")]
                cells = []
                for v in variant_cols:
                    row = keyed[(name, r_, mode, v)]
                    cells.append(f"{row.ratio:.2f}" if row.ratio else "—")
                table.add_row(name, str(r_), mode, str(base.batch_size), _fmt(base.img_s), *cells)
    console.print(table)
    notes = [f"{r.model}@{r.resolution} {r.mode} {r.variant}: {r.note}" for r in rows if r.note]
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]", highlight=False)
    env = capture_env(torch.device("cpu"))
    doc = {"rows": [r.to_dict() for r in rows], "env": {k: env.get(k) for k in ("time_utc", "cpu_model", "cpu_cores_usable", "torch_threads",
                                                                                   "cpu_capability", "torch", "machine")}}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, _json.dumps(doc, indent=1) + "\n")
        console.print(f"written: {out}")
    except OSError as exc:
        err_console.print(f"[yellow]not written:[/] {escape(str(exc))}")


def _allocator_label(rows: list, asked: str) -> str:
    pinned = next((r.allocator for r in rows if r.allocator), None)
    if pinned is None:
        return asked
    if pinned.get("pinned"):
        return f"{pinned['allocator']} pinned (no mmap, trim above {pinned['trim_threshold'] // 2**20} MiB)"
    return f"not pinned ({pinned.get('reason')})"


_PARITY_HELP = """Speed parity: bench's `speed` measurement against a plain reference loop written to timm's
benchmark.py method (warm-up, synchronised timing, inference_mode, pre-allocated input), interleaved over
several rounds; prints bench img/s / reference img/s per model and precision (median, min-max, IQR).

  bench parity --models efficientnet_b0 resnet18 --device cpu --batch 8 --resolution 224 --precision fp32 bf16 --mfu
"""


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, help=_PARITY_HELP)
def parity(ctx: typer.Context) -> None:
    import argparse
    import json as _json

    parser = argparse.ArgumentParser(prog="bench parity", description=_PARITY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="registry names (bench list models)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (reference, bench, bench, reference, ...)")
    parser.add_argument("--warmup", type=int, default=10, help="reference: untimed warm-up calls (timm's default 10)")
    parser.add_argument("--iters", type=int, default=40, help="reference: timed calls (timm's default 40)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for both sides (default: torch's)")
    parser.add_argument("--isolation", choices=["none", "process"], default="none",
                        help="bench side in this process, or a fresh child process per round as `bench run` isolates speed cells")
    parser.add_argument("--set", dest="speed", action="append", default=[], metavar="KEY=VALUE",
                        help="bench's speed setting, e.g. --set min_time_s=2 (repeatable)")
    parser.add_argument("--clock", choices=["wall", "thread_cpu"], default="wall",
                        help="thread_cpu: time both sides by this thread's CPU time (CPU, --threads 1): the work per image, "
                             "whatever the machine's load")
    parser.add_argument("--control", action="store_true",
                        help="A/A control: run the reference loop twice per round, bracketing bench; the spread of second/first "
                             "is this machine's own noise, against which to read bench/reference")
    parser.add_argument("--allocator", choices=["pinned", "default"], default="pinned",
                        help="pinned (default): serve every block from glibc's heap, not trimmed below 2 GiB, in this process (and the fork server's) first, so that neither loop's "
                             "page faults depend on what the other allocated before it (bench.platform.allocator); default: leave glibc as is")
    parser.add_argument("--mfu", action="store_true", help="also count forward FLOPs and give MFU against the device's peak")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(ctx.args)
    import torch

    from bench.platform.device import resolve_device  # deferred: imports torch
    from bench.tools.parity import compare  # deferred: imports torch
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        speed = {}
        for item in args.speed:
            key, _, value = item.partition("=")
            speed[key] = loads_yaml(value)[0] if value else None
        for name in args.models:
            get_entry(name)
        rows = compare(args.models, device=device, batch_size=args.batch, resolution=args.resolution, precisions=args.precision,
                       channels_last=args.channels_last, rounds=args.rounds, warmup_iters=args.warmup, bench_iters=args.iters,
                       speed_settings=speed, isolation=args.isolation, with_mfu=args.mfu, clock=args.clock, control=args.control,
                       allocator=args.allocator,
                       progress=lambda msg: console.print(f"  {escape(msg)}", highlight=False))
    except InputError as exc:
        _fail_input(exc)
        return
    except Exception as exc:  # pydantic's validation error for a bad --set, an unknown model
        if _STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}")
        raise typer.Exit(code=2)
    table = Table(title=f"speed parity on {device} ({torch.get_num_threads()} threads), batch {args.batch}, {args.resolution} px, "
                        f"{args.rounds} rounds, bench isolation {args.isolation}, clock {args.clock}, allocator {_allocator_label(rows, args.allocator)}")
    for col in ("model", "precision", "bench img/s", "reference img/s", "ratio (median)", "min-max", "IQR", "ratio of means", "ratio of medians", "within 5% (both)"):
        table.add_column(col)
    if args.control:
        table.add_column("A/A control (median, min-max)")
    if args.mfu:
        table.add_column("MFU (bench)")
    table.add_column("page faults/call (bench / ref)")
    for r in rows:
        cells = [r.model, r.precision, f"{r.bench_img_s:.1f}", f"{r.reference_img_s:.1f}", f"{r.ratio:.3f}",
                 f"{r.ratio_min:.3f}-{r.ratio_max:.3f}", f"{r.ratio_iqr:.3f}", f"{r.ratio_mean:.3f}", f"{r.ratio_of_medians:.3f}",
                 "yes" if r.within(0.05) else "no"]
        if args.control:
            c = r.control
            cells.append(f"{c['ratio']:.3f} ({c['ratio_min']:.3f}-{c['ratio_max']:.3f})")
        if args.mfu:
            m = (r.mfu or {}).get("bench") or {}
            cells.append(f"{m['mfu']:.1%}" if m.get("mfu") is not None else f"— ({m.get('reason') or 'no FLOP count'})")
        cells.append(" / ".join("—" if v is None else f"{v:,.0f}" for v in (r.bench_faults_per_call, r.reference_faults_per_call)))
        table.add_row(*cells)
    console.print(table)
    console.print("ratio = bench's headline img/s (batch / median batch latency) / the reference's (images / wall time); "
                  "ratio of means / of medians apply one statistic to both loops (mean rate; batch / median call time); "
                  "'within 5%' judges those two. "
                  + ("A/A control = the reference loop's second run / its first in the same round: the machine's own noise. " if args.control else "")
                  + FLOPS_NOTE)
    if args.json:
        args.json.write_text(_json.dumps([r.to_dict() for r in rows], indent=1))


@list_app.command("models")
def list_models_cmd(family: Optional[str] = typer.Option(None, help="Only this family.")) -> None:
    """Registered models with family, source and native resolution."""
    table = Table(title="models (any timm or torchvision model also works as timm:NAME / torchvision:NAME)")
    for col in ("name", "family", "source", "upstream", "native res"):
        table.add_column(col)
    for name in list_models(family):
        e = get_entry(name)
        table.add_row(e.name, e.family, e.source, e.upstream, str(e.native_resolution))
    console.print(table)


@list_app.command("suites")
def list_suites_cmd() -> None:
    """Suites in ./suites (and the package's suites folder)."""
    table = Table(title="suites")
    for col in ("name", "file", "models", "profiles", "description"):
        table.add_column(col, overflow="fold")
    seen = set()
    for folder in SUITE_DIRS:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                s = load_suite(path, profile=None)
                table.add_row(s.name, str(path), str(len(s.models)), ", ".join(s.profiles), s.description.strip().splitlines()[0] if s.description.strip() else "")
            except InputError as exc:
                table.add_row(path.stem, str(path), "—", "—", f"[red]invalid: {escape(exc.format())}[/]")
    console.print(table)


@app.command()
def show(run_dir: Path = typer.Argument(..., help="A run directory written by `bench run`.")) -> None:
    """Show a run's results as a table."""
    try:
        results = RunStore(run_dir).read_cells()
    except InputError as exc:
        _fail_input(exc)
        return
    if not results:
        _fail_input(InputError("no cell results in this run directory", file=run_dir, hint="was the run started?"))
    console.print(_results_table(results, str(run_dir)))
    _print_summary_tables(results)
    console.print(FLOPS_NOTE)


baseline_app = typer.Typer(no_args_is_help=True, help="Save runs as baselines (results/baselines/NAME, meant to be committed).")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `bench run`: one, or several runs of the same suite (the first is the reference; the others give the between-run spread)."),
    name: str = typer.Option(..., "--name", "-n", help="Baseline name: written to results/baselines/NAME."),
    root: Path = typer.Option(Path("results/baselines"), "--root", help="Where baselines live."),
) -> None:
    """Copy runs' results (not their checkpoints) into a baseline folder."""
    try:
        target = save_baseline(run_dirs[0], name, root, repeat_dirs=run_dirs[1:])
    except InputError as exc:
        _fail_input(exc)
        return
    console.print(f"baseline saved: {target}")


@app.command()
def compare(
    baseline: str = typer.Argument(..., help="Baseline run directory, or the name of a saved baseline."),
    current: Path = typer.Argument(..., help="Current run directory."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison as JSON here."),
    allow_hardware_mismatch: bool = typer.Option(False, "--allow-hardware-mismatch", help="Compare timings even when the machines differ."),
    baselines_root: Path = typer.Option(Path("results/baselines"), "--baselines-root", help="Where named baselines live."),
) -> None:
    """Compare two runs cell by cell (matched by id). Exit 0: no regression; 1: regression; 2: bad input."""
    import json as _json

    try:
        base_dir = resolve_run_or_baseline(baseline, baselines_root)
        base_run = load_run(base_dir)
        repeats = load_repeats(base_dir)
        cur_run = load_run(current)
        section = cur_run.suite.get("regression") or base_run.suite.get("regression") or {}
        thresholds = thresholds_from(section, where=f"{cur_run.run_dir}/suite.resolved.json: regression")
    except InputError as exc:
        _fail_input(exc)
        return
    mismatch = hardware_mismatch(base_run.env, cur_run.env)
    comp = compare_results(base_run.results, cur_run.results, thresholds, baseline_repeats=repeats,
                           hardware_independent_only=bool(mismatch) and not allow_hardware_mismatch)
    if mismatch:
        comp.warnings.append("different hardware/software (" + "; ".join(mismatch) + ")" +
                             (": timings compared anyway (--allow-hardware-mismatch)" if allow_hardware_mismatch
                              else ": timings not compared; params and MACs compared exactly, accuracy and F1 coarsely (training "
                                   "reproduces exactly only on the same machine: record a baseline on this hardware for a tight gate)"))
    for w in comp.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}")
    table = Table(title=f"{cur_run.label} against {base_run.label}")
    for col in ("cell", "metric", "baseline", "current", "change", "allowed", "verdict", "note"):
        table.add_column(col, justify="right" if col in ("baseline", "current", "change", "allowed") else "left", overflow="fold")
    for f in comp.findings:
        verdict = "[red]REGRESSION[/]" if f.regression else ("[green]better[/]" if f.improvement else "ok")
        change = f"{f.relative * 100:+.1f}%" if f.relative is not None else f"{f.change:+g}"
        allowed = "off" if f.threshold == "off" else _fmt(f.allowed)
        table.add_row(f"{f.cell_id} {escape(f.label)}", f.metric, _fmt(f.baseline), _fmt(f.current), change, allowed, verdict, escape(f.note))
    console.print(table)
    for c in comp.failed_cells:
        console.print(f"[red]newly failed:[/] {c['id']} {escape(c['label'])}: {escape(c['reason'])}")
    for c in comp.missing_cells:
        console.print(f"[red]missing in current:[/] {c}")
    for c in comp.new_cells:
        console.print(f"new in current: {c}")
    md = markdown_summary(comp, base_run.label, cur_run.label)
    if markdown:
        with open(markdown, "a", encoding="utf-8") as fh:  # append: $GITHUB_STEP_SUMMARY may hold more
            fh.write(md)
    if json_out:
        atomic_write_text(json_out, _json.dumps(comp.to_dict(), indent=2) + "\n")
    if comp.regressed:
        names = sorted({f"{f.cell_id}:{f.metric}" for f in comp.regressions} | {f"{c['id']}:failed" for c in comp.failed_cells} | {f"{c}:missing" for c in comp.missing_cells})
        err_console.print(f"[bold red]regression:[/] {len(names)} finding(s): " + ", ".join(names))
        raise typer.Exit(code=1)
    console.print(f"no regression: {len(comp.findings)} metrics compared over {len({f.cell_id for f in comp.findings})} cells")


def main() -> None:
    """Console-script entry point: input errors -> exit 2 without traceback."""
    try:
        app()
    except BenchError as exc:  # raised outside a command's own handling: input errors exit 2, others 1
        if "--debug" in sys.argv:
            raise
        for line in str(exc).splitlines():
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
