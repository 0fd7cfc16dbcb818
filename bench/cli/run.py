"""`bench run`: a suite's cells run and recorded, a progress bar, the results tables, the report."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.cli.console import FLOPS_NOTE, STATE, console, duration, err_console, fail_input, load_cells, set_threads
from bench.cli.tables import print_fidelity_notes, print_seed_summary, print_summary_tables, results_table
from bench.core.cell import Cell
from bench.core.errors import InputError, StorageError
from bench.plan.cost import total
from bench.platform.allocator import resolve as resolve_allocator
from bench.store.run_store import RunStore


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
            self.progress.console.print(
                f"[red]cell {result.id} ({result.cell.label()}) failed:[/] {escape(result.reason or '')}",
                highlight=False,
            )
        self.progress.update(self.task, advance=1, counts=self._counts())

    def notice(self, message: str) -> None:
        self.progress.console.print(f"[yellow]{escape(message)}[/]", highlight=False)


def run(
    suite: str | None = typer.Argument(None, help="Suite file, or the name of one in suites/ (e.g. smoke)."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Named profile of the suite (e.g. quick, full)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory (default results/<suite>/<run-id>). An existing one is resumed."
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Resume an interrupted run directory from its own plan: finished cells are kept, failed and unfinished ones run.",
    ),
    results_root: Path = typer.Option(Path("results"), "--results-root", help="Where new run directories go."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a field: --set settings.train.epochs=3 (dotted key, YAML value); repeatable."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Do not render report.html / report.md at the end."),
    isolation: str | None = typer.Option(
        None,
        "--isolation",
        help="auto (a fresh process per cell that measures speed; the default), process (every cell), "
        "none (all in this process). Default: the suite's `isolation`.",
    ),
    force_resume: bool = typer.Option(
        False,
        "--force-resume",
        help="Resume into a run directory that ran another plan, other data, thread count or versions (refused "
        "otherwise); its reports then read only this plan's cells.",
    ),
    executor_name: str | None = typer.Option(
        None,
        "--executor",
        help="local (this machine, one cell after the other; the default) or ray (each cell a task on a Ray cluster: "
        "the suite's `ray:` options, e.g. --set ray.address=auto). Default: the suite's `executor`.",
    ),
) -> None:
    """Run a suite: every cell's measurements, recorded under results/, then its report.

    The data is checked before anything runs; the run directory's lock is the first thing taken and the last
    released, and a resume that would run something else is refused (bench.execution.integrity)."""
    try:
        if isolation is not None and isolation not in ("auto", "process", "none"):
            raise InputError(
                f"unknown isolation mode '{isolation}'", field="--isolation", hint="use auto, process or none"
            )
        from bench.execution.executors import make_executor  # deferred: imports torch
        from bench.execution.integrity import begin_run, fingerprint, run_directory  # deferred: imports torch
        from bench.measure.train.datacheck import check_data  # deferred: reads the data (numpy, scikit-learn)
        from bench.platform.device import resolve_device  # deferred: imports torch
        from bench.platform.env import capture_env  # deferred: imports torch

        if resume is not None:
            if suite or out or profile or overrides:
                raise InputError(
                    "--resume takes the run directory's own plan",
                    field="--resume",
                    hint="give either SUITE (with --out to resume into a folder) or --resume RUN_DIR alone",
                )
            planned = _resume_plan(resume)
        elif suite is None:
            raise InputError(
                "no suite given",
                hint="bench run SUITE (e.g. bench run suites/artists.yaml) or bench run --resume RUN_DIR",
            )
        else:
            loaded, cells = load_cells(suite, profile, overrides)
            planned = {
                "name": loaded.name,
                "profile": loaded.profile,
                "device": loaded.device,
                "base_dir": loaded.base_dir(),
                "cells": cells,
                "resolved": loaded.resolved_dict(),
                "isolation": loaded.isolation,
                "memory_limit_mb": loaded.memory_limit_mb,
                "threads": loaded.threads,
                "allocator": loaded.allocator,
                "executor": loaded.executor,
                "ray": loaded.ray.model_dump(),
                "yaml": loaded.path.read_text(encoding="utf-8") if loaded.path is not None else None,
                "source": loaded.path,
            }
        cells = planned["cells"]
        set_threads(planned.get("threads"))
        device = resolve_device(planned["device"])
        executor = make_executor(
            executor_name or planned.get("executor") or "local",
            isolation=isolation or planned.get("isolation") or "auto",
            memory_limit_mb=planned.get("memory_limit_mb"),
            ray_options=planned.get("ray"),
            allocator=resolve_allocator(planned.get("allocator"), device.type),
        )
        # the data, once per source, before anything is written or run
        sources = check_data(cells, planned["base_dir"], suite_file=planned.get("source"))
        store = RunStore(resume) if resume is not None else run_directory(out, results_root, planned["name"])
    except InputError as exc:
        fail_input(exc)
        return
    try:
        env = capture_env(device, seeds=sorted({c.seed for c in cells}), allocator=getattr(executor, "allocator", None))
        env["executor"] = executor.describe()  # how this (or this resumed) run executed its cells
        forced = begin_run(  # takes the lock: released below, after the report
            store,
            fingerprint_now=fingerprint(cells, sources, threads=_torch_threads(), resolved=planned.get("resolved")),
            env=env,
            resolved=planned["resolved"] if resume is None else None,
            suite_yaml=planned["yaml"] if resume is None else None,
            force_resume=force_resume,
        )
    except InputError as exc:  # another run holds the directory, or it ran something else
        fail_input(exc)
        return
    except StorageError as exc:
        if STATE["debug"]:
            raise
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))} — free space or fix permissions", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=exc.exit_code) from None
    try:
        if forced:
            console.print(
                f"[yellow]--force-resume:[/] {escape('; '.join(forced))}; reports read only this plan's cells",
                highlight=False,
            )
        _run_held(store, planned, cells, device, executor, results_root, no_report)
    finally:
        store.release()


def _torch_threads() -> int:
    import torch  # deferred: torch's thread count, set by the suite's `threads`

    return torch.get_num_threads()


def _run_held(store: RunStore, planned: dict[str, Any], cells: list, device, executor, results_root: Path, no_report):
    """The sweep, its tables, estimates and report, all written while the run holds its directory's lock."""
    from bench.execution.sweep import run_cells  # deferred: imports torch

    estimates = _run_estimates(cells, device, planned["base_dir"], results_root)
    loaded_name, loaded_profile = planned["name"], planned["profile"]
    console.print(
        f"[bold]{loaded_name}[/]: {len(cells)} cells on {device}"
        + (
            f" (executor ray, cluster {escape(getattr(executor, 'address', None) or 'local')})"
            if executor.name == "ray"
            else ""
        )
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
            summary = run_cells(
                cells, store, device, progress=_RichProgress(bar, task), base_dir=planned["base_dir"], executor=executor
            )
        _record_estimates(store, cells, summary.results, estimates, time.perf_counter() - run_started)
    except KeyboardInterrupt:
        # Ctrl-C: the current cell is abandoned (nothing of it is written), finished cells stay on disk.
        finished = sum(1 for c in cells if (r := store.read_cell(c.id)) is not None and r.status in ("ok", "skipped"))
        err_console.print(
            f"[bold yellow]interrupted:[/] {finished} of {len(cells)} cells finished and kept in "
            f"{escape(str(store.run_dir))}; resume with: {escape(resume_cmd)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=130) from None
    except StorageError as exc:
        if STATE["debug"]:
            raise
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))} — free space (or fix permissions), then resume with: "
            f"{escape(resume_cmd)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=exc.exit_code) from None
    except InputError as exc:
        fail_input(exc)
        return
    console.print(results_table(summary.results, f"{loaded_name} — {store.run_dir}"))
    print_summary_tables(summary.results)
    print_seed_summary(summary.results, store)
    console.print(FLOPS_NOTE + " Throughput = batch size / median batch latency.")
    print_fidelity_notes(summary.results)
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
        return {
            "calibration": cal,
            "cells": estimate_cells(
                cells, base_dir, cal, device_type=device.type, cache_path=default_cache_path(results_root)
            ),
        }
    except Exception:  # noqa: BLE001
        if STATE["debug"]:
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
        rows.append(
            {
                "id": cell.id,
                "label": cell.label(),
                "estimate_s": est["total"],
                "estimate_parts_s": est,
                "duration_s": r.duration_s if r is not None else None,
                "status": r.status if r is not None else None,
            }
        )
    cal = estimates["calibration"]
    doc = {
        "estimate_total_s": total(estimates["cells"], cal),
        "wall_s": wall_s,
        "cells": rows,
        "calibration_key": cal.key,
    }
    try:
        store.write_json("estimates.json", doc)
    except StorageError:
        return
    console.print(
        f"time: {duration(wall_s)} measured, {duration(doc['estimate_total_s'])} estimated by `bench plan` "
        f"(per cell in {store.run_dir / 'estimates.json'})",
        highlight=False,
    )


def _resume_plan(run_dir: Path) -> dict[str, Any]:
    """What a run directory says about itself: its planned cells (plan.json) and its suite."""
    store = RunStore(run_dir)
    if not (run_dir / "plan.json").is_file():
        raise InputError(
            "not a run directory (no plan.json)", file=run_dir, hint="pass a folder written by `bench run`"
        )
    try:
        plan = store.read_json("plan.json")
        cells = [Cell.from_dict(c) for c in plan["cells"]]
        resolved = store.read_json("suite.resolved.json") if (run_dir / "suite.resolved.json").is_file() else {}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"unreadable plan ({exc})", file=run_dir / "plan.json", hint="start a new run instead"
        ) from None
    source = resolved.get("source")
    return {
        "name": resolved.get("name") or run_dir.parent.name,
        "profile": resolved.get("profile"),
        "device": resolved.get("device", "auto"),
        "base_dir": Path(source).resolve().parent if source else Path.cwd(),
        "cells": cells,
        "isolation": resolved.get("isolation", "auto"),
        "memory_limit_mb": resolved.get("memory_limit_mb"),
        "executor": resolved.get("executor", "local"),
        "ray": resolved.get("ray"),
        "threads": resolved.get("threads"),
        "resolved": resolved or None,
        "source": Path(source) if source else None,
        "allocator": resolved.get("allocator"),
    }


def _render_after_run(run_dir: Path, skip: bool) -> None:
    """The run's own report, rendered from what it wrote; a report error never fails the run."""
    from bench.report import render_report  # deferred: imports matplotlib

    if skip:
        return
    try:
        paths = render_report([run_dir])
    except Exception as exc:  # noqa: BLE001 - the results are safe on disk; say why the report is missing
        if STATE["debug"]:
            raise
        err_console.print(
            f"[yellow]report not rendered:[/] {escape(type(exc).__name__ + ': ' + str(exc))} (retry with `bench report {run_dir}`)"
        )
        return
    console.print("report: " + ", ".join(str(p) for p in paths.values()))
