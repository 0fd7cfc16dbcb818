"""`bench run`: a suite's cells run and recorded, a progress bar, the results tables, the report.

The work is the Python API's (bench.api): `prepare` (the suite, the data check, the run directory and its lock)
and `execute` (the sweep, the estimates, the report); this module parses the options, prints, and maps errors
to exit codes: 2 bad input (or a run directory held by another run, or a resume of something else), 1 a failed
cell or a full disk, 130 Ctrl-C."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import api
from bench.cli.console import FLOPS_NOTE, STATE, console, duration, err_console, fail_input
from bench.cli.tables import print_fidelity_notes, print_seed_summary, print_summary_tables, results_table
from bench.core.errors import InputError, StorageError
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
        prepared = api.prepare(
            suite,
            profile,
            overrides,
            out,
            resume=resume,
            results_root=results_root,
            isolation=isolation,
            executor=executor_name,
            force_resume=force_resume,
        )
    except InputError as exc:  # bad input, another run holds the directory, or it ran something else
        fail_input(exc)
    except StorageError as exc:
        _storage_error(exc, "free space or fix permissions")
    try:
        _print_header(prepared)
        run_ = _execute(prepared, no_report)
    finally:
        prepared.release()  # `execute` has released it; this covers an error before it started
    _print_results(run_, prepared)
    if run_.failed:
        raise typer.Exit(code=1)


def _print_header(p: api.Prepared) -> None:
    if p.forced:
        console.print(
            f"[yellow]--force-resume:[/] {escape('; '.join(p.forced))}; reports read only this plan's cells",
            highlight=False,
        )
    console.print(
        f"[bold]{p.name}[/]: {len(p.cells)} cells on {p.device}"
        + (
            f" (executor ray, cluster {escape(getattr(p.executor, 'address', None) or 'local')})"
            if p.executor.name == "ray"
            else ""
        )
        + (f", profile [cyan]{p.profile}[/]" if p.profile else "")
        + f" → {p.run_dir}"
    )


def _execute(p: api.Prepared, no_report: bool) -> api.Run:
    """The sweep with a progress bar, then the estimates and the report (api.execute, under the lock)."""
    columns = [
        TextColumn("[progress.description]{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    resume_cmd = f"bench run --resume {shlex.quote(str(p.run_dir))}"
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("starting", total=len(p.cells), counts="")
            return api.execute(p, _RichProgress(bar, task), report=not no_report, strict=STATE["debug"])
    except KeyboardInterrupt:
        # Ctrl-C: the current cell is abandoned (nothing of it is written), finished cells stay on disk.
        store = RunStore(p.run_dir)
        finished = sum(1 for c in p.cells if (r := store.read_cell(c.id)) is not None and r.status in ("ok", "skipped"))
        err_console.print(
            f"[bold yellow]interrupted:[/] {finished} of {len(p.cells)} cells finished and kept in "
            f"{escape(str(p.run_dir))}; resume with: {escape(resume_cmd)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=130) from None
    except StorageError as exc:
        _storage_error(exc, f"free space (or fix permissions), then resume with: {resume_cmd}")
    except InputError as exc:
        fail_input(exc)


def _storage_error(exc: StorageError, fix: str) -> NoReturn:
    if STATE["debug"]:
        raise exc
    err_console.print(f"[bold red]error:[/] {escape(str(exc))} — {escape(fix)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=exc.exit_code) from None


def _print_results(run_: api.Run, p: api.Prepared) -> None:
    """The measured time beside the estimate, the results tables, the counts, and where the report is."""
    if run_.timing is not None:
        console.print(
            f"time: {duration(run_.timing['wall_s'])} measured, {duration(run_.timing['estimate_total_s'])} "
            f"estimated by `bench plan` (per cell in {run_.timing['path']})",
            highlight=False,
        )
    results = run_.results
    console.print(results_table(results, f"{p.name} — {p.run_dir}"))
    print_summary_tables(results)
    print_seed_summary(results)
    console.print(FLOPS_NOTE + " Throughput = batch size / median batch latency.")
    print_fidelity_notes(results)
    console.print(
        f"{run_.count('ok')} ok, {run_.failed} failed, {run_.count('skipped')} skipped"
        + (f" ({run_.reused} reused from an earlier run)" if run_.reused else "")
        + f"; results: {p.run_dir / 'results.csv'}"
    )
    if run_.report_error is not None:
        err_console.print(
            f"[yellow]report not rendered:[/] {escape(run_.report_error)} (retry with `bench report {p.run_dir}`)"
        )
    elif run_.report_paths:
        console.print("report: " + ", ".join(str(path) for path in run_.report_paths.values()))
