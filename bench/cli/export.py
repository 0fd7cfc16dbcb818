"""`bench export mlflow` and `bench export github-benchmark`: a run in the tools people already use."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.api import load
from bench.cli.console import console, fail_input
from bench.core.errors import InputError
from bench.tools import export_github, export_mlflow


def mlflow_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `bench run` (or a saved baseline)."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow's tracking URI (default: MLFLOW_TRACKING_URI, else MLflow's local default).",
    ),
    experiment: str | None = typer.Option(None, "--experiment", help="Experiment name (default: the suite's name)."),
) -> None:
    """Log a run to MLflow: one MLflow run per cell (params, metrics, curves as steps, tags, artifacts).
    Exporting again adds nothing; needs the mlflow extra."""
    try:
        run = load(run_dir)
        ids = export_mlflow.export(run.run_dir, run.results, run.name, tracking_uri=tracking_uri, experiment=experiment)
    except InputError as exc:
        fail_input(exc)
        return
    console.print(f"mlflow: {len(ids)} cells of {run.run_dir} in experiment '{experiment or run.name}'")


def github_benchmark_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `bench run` (or a saved baseline)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the two JSON files (default: RUN_DIR)."),
) -> None:
    """Write github-action-benchmark's JSON: github-benchmark-bigger.json (tool customBiggerIsBetter) and
    github-benchmark-smaller.json (customSmallerIsBetter), one entry per cell and gated metric."""
    try:
        run = load(run_dir)
        paths = export_github.write(run.results, out or run.run_dir, suite=run.name, run_id=run.run_id)
    except InputError as exc:
        fail_input(exc)
        return
    for tool, path in paths.items():
        console.print(f"{tool}: {path}")
