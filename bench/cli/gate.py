"""`bench gate` (same-machine A/B), `bench compare` and `bench baseline save`: the regression gate.

Exit codes, the same for both gates: 0 no regression, 1 regression, 2 bad input, 3 inconclusive (the gate
could not judge something, and says what; `--inconclusive-ok` turns 3 into 0 for those who want that).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from bench import api
from bench.cli.console import (
    SUITE_DIRS,
    console,
    err_console,
    fail_input,
    fmt,
)
from bench.core.errors import InputError
from bench.core.files import atomic_write_text
from bench.measure.catalogue import THROUGHPUT
from bench.store.baselines import save_baseline
from bench.suite import find_suite


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
    threshold: list[str] | None = typer.Option(
        None,
        "--threshold",
        help=f"METRIC:THRESHOLD over the baseline suite's, e.g. {THROUGHPUT.path}:10%; repeatable.",
    ),
    inconclusive_ok: bool = typer.Option(
        False, "--inconclusive-ok", help="Exit 0 instead of 3 when something could not be judged."
    ),
    hardware_independent: bool = typer.Option(
        False,
        "--hardware-independent",
        help="Judge only what does not depend on the machine (params, MACs; accuracy and F1 coarsely): "
        "timings are left out on purpose, so other hardware is not a reason for 'inconclusive'.",
    ),
) -> None:
    """Compare a run with a baseline cell by cell (matched by id). Exit 0: no regression; 1: regression;
    2: bad input; 3: inconclusive (other hardware, a busy machine, a metric or cell gone)."""
    import json as _json

    try:
        result = api.compare(
            baseline,
            current,
            thresholds=threshold or [],
            hardware_independent=hardware_independent,
            allow_hardware_mismatch=allow_hardware_mismatch,
            baselines_root=baselines_root,
        )
    except InputError as exc:
        fail_input(exc)
    comp = result.gate
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    for w in comp.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}")
    table = Table(title=f"{result.current} against {result.baseline}")
    for col in ("cell", "metric", "baseline", "current", "change", "allowed", "verdict", "note"):
        table.add_column(
            col, justify="right" if col in ("baseline", "current", "change", "allowed") else "left", overflow="fold"
        )
    for f in comp.findings:
        verdict = (
            "[red]REGRESSION[/]"
            if f.regression
            else ("[green]better[/]" if f.improvement else ("ok" if f.judged else "[yellow]not judged[/]"))
        )
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
    if markdown:
        with open(markdown, "a", encoding="utf-8") as fh:  # append: $GITHUB_STEP_SUMMARY may hold more
            fh.write(result.markdown())
    if json_out:
        atomic_write_text(json_out, _json.dumps(result.to_dict(), indent=2) + "\n")
    if result.verdict == "regression":
        names = sorted(
            {f"{f.cell_id}:{f.metric}" for f in comp.regressions}
            | {f"{c['id']}:failed" for c in comp.failed_cells}
            | {f"{c}:missing" for c in comp.missing_cells}
        )
        err_console.print(f"[bold red]regression:[/] {len(names)} finding(s): " + ", ".join(names))
        raise typer.Exit(code=1)
    if result.verdict == "inconclusive":
        for why in comp.inconclusive:
            err_console.print(f"[bold yellow]cannot judge:[/] {escape(why)}", highlight=False, soft_wrap=True)
        err_console.print(
            f"[bold yellow]inconclusive:[/] {len(comp.inconclusive)} thing(s) could not be judged"
            + (" (--inconclusive-ok: exit 0)" if inconclusive_ok else "")
        )
        raise typer.Exit(code=0 if inconclusive_ok else INCONCLUSIVE_EXIT)
    console.print(
        f"no regression: {len(comp.findings)} metrics compared over {len({f.cell_id for f in comp.findings})} cells"
    )


INCONCLUSIVE_EXIT = 3


def gate(
    base_ref: str = typer.Argument(..., help="The base revision: a commit, branch or tag (e.g. origin/main, v1.2)."),
    suite: str = typer.Argument(
        ..., help="Suite file (the head's; both sides run it), or a suite name (e.g. nightly)."
    ),
    head_ref: str | None = typer.Option(None, "--head", help="The head revision (default: the working tree as it is)."),
    rounds: int = typer.Option(
        6,
        "--rounds",
        "-r",
        help="Rounds (ABBA) at least; 6 is the fewest for a 95% interval (with --max-rounds above it, the first "
        "look may come later: see --max-rounds).",
    ),
    max_rounds: int | None = typer.Option(
        None,
        "--max-rounds",
        help="Add rounds up to this many while a timing is inconclusive (default: --rounds); the timings are then "
        "judged at a few rounds only, each interval wider so that all the looks together keep 95%.",
    ),
    base_python: str | None = typer.Option(
        None, "--base-python", help="Run the base side with this Python (another environment: gate a torch upgrade)."
    ),
    threshold: list[str] | None = typer.Option(
        None, "--threshold", help="METRIC:THRESHOLD over the catalogue's same-machine defaults; repeatable."
    ),
    overrides: list[str] | None = typer.Option(None, "--set", help="Override a suite field on both sides; repeatable."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where the sides' runs and the verdict go."),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Append a Markdown summary here ($GITHUB_STEP_SUMMARY)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the verdict as JSON here."),
    inconclusive_ok: bool = typer.Option(
        False, "--inconclusive-ok", help="Exit 0 instead of 3 when something could not be judged."
    ),
    concurrent: bool = typer.Option(
        False,
        "--concurrent",
        help="Run both sides of a round at the same time (cores >= 2x the suite's threads): the same moment's "
        "load for both, on a shared machine.",
    ),
    strict_wall_clock: bool = typer.Option(
        False,
        "--strict-wall-clock",
        help="On a CPU, keep a cell inconclusive while its wall-clock timings are, even when its CPU time passed.",
    ),
) -> None:
    """Same-machine A/B: measure BASE_REF and the head on this machine, interleaved over rounds, and judge
    the head. Exit 0: no regression; 1: regression; 2: bad input; 3: inconclusive."""
    import json as _json
    from datetime import datetime, timezone

    from bench.tools.ab_gate import run_gate  # deferred: imports scipy
    from bench.tools.ab_markdown import gate_markdown, gate_rows  # deferred: imports scipy

    try:
        suite_path = find_suite(suite, SUITE_DIRS)
        target = out or Path("results") / "gate" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        result = run_gate(
            base_ref,
            suite_path,
            head_ref=head_ref,
            out=target,
            rounds=rounds,
            max_rounds=max_rounds,
            base_python=base_python,
            threshold_overrides=threshold or [],
            overrides=overrides or [],
            progress=lambda message: err_console.print(f"[dim]{escape(message)}[/]", highlight=False),
            concurrent=concurrent,
            strict_wall_clock=strict_wall_clock,
        )
    except InputError as exc:
        fail_input(exc)
        return
    table = Table(title=f"bench gate: {result.head['ref']} against {result.base['ref']} ({result.looks_said})")
    for col in ("cell", "metric", "base", "head", f"ratio ({result.interval})", "threshold", "verdict", "note"):
        table.add_column(col, justify="right" if col in ("base", "head") else "left", overflow="fold")
    for row in gate_rows(result):
        table.add_row(*[escape(str(v)) for v in row])
    console.print(table)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    md = gate_markdown(result)
    atomic_write_text(target / "gate.md", md)
    payload = _json.dumps(result.to_dict(), indent=2) + "\n"
    atomic_write_text(target / "gate.json", payload)
    if markdown:
        with open(markdown, "a", encoding="utf-8") as fh:
            fh.write(md)
    if json_out:
        atomic_write_text(json_out, payload)
    verdict = result.verdict
    if verdict == "regression":
        err_console.print("[bold red]regression:[/] " + ", ".join(result.regressions))
        raise typer.Exit(code=1)
    if verdict == "inconclusive":
        for why in result.to_dict()["inconclusive"]:
            err_console.print(f"[bold yellow]cannot judge:[/] {escape(why)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=0 if inconclusive_ok else INCONCLUSIVE_EXIT)
    console.print(f"no regression: {result.rounds_run} rounds; verdict and runs in {target}")
