"""`bench baseline save` and `bench compare`: the regression gate from the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.console import (
    console,
    err_console,
    fail_input,
    fmt,
)
from bench.core.errors import InputError
from bench.core.files import atomic_write_text
from bench.core.result import refuse_mixed_evaluation
from bench.measure.catalogue import thresholds_from
from bench.store.baselines import load_repeats, resolve_run_or_baseline, save_baseline


def baseline_save(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories written by `bench run`: one, or several runs of the same suite (the first is the "
        "reference; the others give the between-run spread).",
    ),
    name: str = typer.Option(..., "--name", "-n", help="Baseline name: written to results/baselines/NAME."),
    root: Path = typer.Option(Path("results/baselines"), "--root", help="Where baselines live."),
) -> None:
    """Copy runs' results (not their checkpoints) into a baseline folder."""
    try:
        target = save_baseline(run_dirs[0], name, root, repeat_dirs=run_dirs[1:])
    except InputError as exc:
        fail_input(exc)
        return
    console.print(f"baseline saved: {target}")


def compare(
    baseline: str = typer.Argument(..., help="Baseline run directory, or the name of a saved baseline."),
    current: Path = typer.Argument(..., help="Current run directory."),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Also write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the comparison as JSON here."),
    allow_hardware_mismatch: bool = typer.Option(
        False, "--allow-hardware-mismatch", help="Compare timings even when the machines differ."
    ),
    baselines_root: Path = typer.Option(
        Path("results/baselines"), "--baselines-root", help="Where named baselines live."
    ),
) -> None:
    """Compare two runs cell by cell (matched by id). Exit 0: no regression; 1: regression; 2: bad input."""
    import json as _json

    from bench.gate.regression import compare_results, hardware_mismatch, markdown_summary  # deferred: imports scipy
    from bench.report.data import load_run  # deferred: imports matplotlib

    try:
        base_dir = resolve_run_or_baseline(baseline, baselines_root)
        base_run = load_run(base_dir)
        repeats = load_repeats(base_dir)
        cur_run = load_run(current)
        refuse_mixed_evaluation([(base_run.label, base_run.results), (cur_run.label, cur_run.results)])
        section = cur_run.suite.get("regression") or base_run.suite.get("regression") or {}
        thresholds = thresholds_from(section, where=f"{cur_run.run_dir}/suite.resolved.json: regression")
    except InputError as exc:
        fail_input(exc)
        return
    mismatch = hardware_mismatch(base_run.env, cur_run.env)
    comp = compare_results(
        base_run.results,
        cur_run.results,
        thresholds,
        baseline_repeats=repeats,
        hardware_independent_only=bool(mismatch) and not allow_hardware_mismatch,
    )
    if mismatch:
        comp.warnings.append(
            "different hardware/software ("
            + "; ".join(mismatch)
            + ")"
            + (
                ": timings compared anyway (--allow-hardware-mismatch)"
                if allow_hardware_mismatch
                else ": timings not compared; params and MACs compared exactly, accuracy and F1 coarsely (training "
                "reproduces exactly only on the same machine: record a baseline on this hardware for a tight gate)"
            )
        )
    for w in comp.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}")
    table = Table(title=f"{cur_run.label} against {base_run.label}")
    for col in ("cell", "metric", "baseline", "current", "change", "allowed", "verdict", "note"):
        table.add_column(
            col, justify="right" if col in ("baseline", "current", "change", "allowed") else "left", overflow="fold"
        )
    for f in comp.findings:
        verdict = "[red]REGRESSION[/]" if f.regression else ("[green]better[/]" if f.improvement else "ok")
        change = f"{f.relative * 100:+.1f}%" if f.relative is not None else f"{f.change:+g}"
        allowed = "off" if f.threshold == "off" else fmt(f.allowed)
        table.add_row(
            f"{f.cell_id} {escape(f.label)}",
            f.metric,
            fmt(f.baseline),
            fmt(f.current),
            change,
            allowed,
            verdict,
            escape(f.note),
        )
    console.print(table)
    for what, cid, detail in comp.cell_notes():
        colour = "" if what == "new in current" else "[red]"
        console.print(f"{colour}{what}:{'[/]' if colour else ''} {cid}" + (f" {escape(detail)}" if detail else ""))
    md = markdown_summary(comp, base_run.label, cur_run.label)
    if markdown:
        with open(markdown, "a", encoding="utf-8") as fh:  # append: $GITHUB_STEP_SUMMARY may hold more
            fh.write(md)
    if json_out:
        atomic_write_text(json_out, _json.dumps(comp.to_dict(), indent=2) + "\n")
    if comp.regressed:
        names = sorted(
            {f"{f.cell_id}:{f.metric}" for f in comp.regressions}
            | {f"{c['id']}:failed" for c in comp.failed_cells}
            | {f"{c}:missing" for c in comp.missing_cells}
        )
        err_console.print(f"[bold red]regression:[/] {len(names)} finding(s): " + ", ".join(names))
        raise typer.Exit(code=1)
    console.print(
        f"no regression: {len(comp.findings)} metrics compared over {len({f.cell_id for f in comp.findings})} cells"
    )
