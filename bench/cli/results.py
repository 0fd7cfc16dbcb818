"""`bench report` and `bench show`: a run's results as a report or a console table."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.cli.console import (
    FLOPS_NOTE,
    console,
    fail_input,
)
from bench.cli.tables import print_summary_tables, results_table
from bench.core.errors import InputError
from bench.store.run_store import RunStore


def report(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories written by `bench run`; with several, the first is the baseline the others are compared with.",
    ),
    formats: str = typer.Option("html,md", "--format", "-f", help="Comma-separated: html, md."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for report.html / report.md (default: the last run directory)."
    ),
) -> None:
    """Render a comparison report (self-contained HTML and GitHub Markdown) from results on disk."""
    from bench.report import render_report  # deferred: imports matplotlib

    try:
        paths = render_report(run_dirs, out, [f.strip() for f in formats.split(",") if f.strip()])
    except InputError as exc:
        fail_input(exc)
        return
    for fmt, path in paths.items():
        console.print(f"{fmt}: {path}")


def show(run_dir: Path = typer.Argument(..., help="A run directory written by `bench run`.")) -> None:
    """Show a run's results as a table."""
    try:
        results = RunStore(run_dir).read_cells()
    except InputError as exc:
        fail_input(exc)
        return
    if not results:
        fail_input(InputError("no cell results in this run directory", file=run_dir, hint="was the run started?"))
    console.print(results_table(results, str(run_dir)))
    print_summary_tables(results)
    console.print(FLOPS_NOTE)
