"""`bench plan`: the cells a suite expands to, and an estimate of each one's time; nothing runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.console import console, duration, err_console, fail_input, load_cells, set_threads
from bench.core.errors import InputError
from bench.execution.epochs import shared_training_groups
from bench.plan.cost import total


def _estimates(
    cells: list,
    device,
    base_dir: Path,
    results_root: Path,
    *,
    recalibrate: bool = False,
    calibrate_missing: bool = True,
):
    """(per-cell estimates, calibration) or (None, None) when no calibration is cached and none may be measured."""
    from bench.plan.calibration import (  # deferred: imports torch
        default_path,
        get_calibration,
        load_cached,
        machine_key,
    )
    from bench.plan.workload import default_cache_path, estimate_cells  # deferred: imports torch

    path = default_path(results_root)
    if not calibrate_missing and load_cached(path, machine_key(device)) is None:
        return None, None
    precisions = tuple(dict.fromkeys(["fp32", *(c.precision for c in cells)]))
    cal, _ = get_calibration(
        device,
        path,
        precisions=precisions,
        recalibrate=recalibrate,
        log=lambda m: err_console.print(f"[dim]{escape(m)}[/]", highlight=False),
    )
    return estimate_cells(
        cells, base_dir, cal, device_type=device.type, cache_path=default_cache_path(results_root)
    ), cal


def plan(
    suite: str = typer.Argument(..., help="Suite file, or the name of one in suites/."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Named profile of the suite."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a field: --set settings.train.epochs=3 (dotted key, YAML value); repeatable."
    ),
    estimate: bool = typer.Option(
        True,
        "--estimate/--no-estimate",
        help="Estimate each cell's time from its FLOPs and a measured calibration of this machine.",
    ),
    recalibrate: bool = typer.Option(
        False,
        "--recalibrate",
        help="Measure this machine's calibration again (cached in results/.calibration.json per device, torch version and thread count).",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print the plan (cells and estimates) as JSON instead of a table."
    ),
    results_root: Path = typer.Option(
        Path("results"), "--results-root", help="Where the calibration and FLOP caches live."
    ),
) -> None:
    """Dry run: the number of cells, a table of them and an estimate of each one's time; nothing is executed."""
    import json as _json

    try:
        loaded, cells = load_cells(suite, profile, overrides)
        device: Any = loaded.device  # without estimates, the suite's own setting: no torch needed
        estimates, cal = None, None
        if estimate:
            from bench.platform.device import resolve_device  # deferred: estimates need torch, a dry plan does not

            set_threads(loaded.threads)  # the calibration is per thread count
            device = resolve_device(loaded.device)
            estimates, cal = _estimates(cells, device, loaded.base_dir(), results_root, recalibrate=recalibrate)
    except InputError as exc:
        fail_input(exc)
        return
    served = sum(len(g) - 1 for g in shared_training_groups(cells))
    total_s = None
    if estimates is not None and cal is not None:
        total_s = total(estimates, cal)
    if json_out:
        rows = [
            {
                **c.to_dict(),
                "label": c.label(),
                **({"estimate_s": e["total"], "estimate_parts_s": e} if estimates else {}),
            }
            for c, e in zip(cells, estimates or [None] * len(cells))
        ]
        doc = {
            "suite": loaded.name,
            "profile": loaded.profile,
            "device": str(device),
            "cells": rows,
            "estimate_total_s": total_s,
            "calibration": cal.to_dict() if cal else None,
        }
        sys.stdout.write(_json.dumps(doc, separators=(",", ":")) + "\n")
        return
    if len(cells) <= PLAN_TABLE_MAX_ROWS:
        console.print(_plan_table(loaded, cells, estimates))
    else:
        console.print(_plan_summary(loaded, cells, estimates))
    console.print(
        f"{len(cells)} cells"
        + (
            f"; {served} of them read off a longer run of the same config (epoch sweep: one training serves them)"
            if served
            else ""
        )
    )
    if total_s is not None and cal is not None:
        key = cal.key
        console.print(
            f"estimated time: [bold]{duration(total_s)}[/] on {escape(str(key.get('device_name')))} "
            f"({key.get('threads')} threads; {duration(cal.run_fixed_s)} start-up included). Training assumes every "
            "epoch runs (early stopping only shortens it); calibration cached in "
            f"{escape(str(results_root / '.calibration.json'))} (--recalibrate to measure again).",
            highlight=False,
        )


# a plan longer than this is summarised per model (bench plan --json lists every cell)
PLAN_TABLE_MAX_ROWS = 200


def _plan_table(loaded, cells: list, estimates) -> Table:
    table = Table(title=f"{loaded.name}" + (f" (profile {loaded.profile})" if loaded.profile else ""))
    swept = list(dict.fromkeys(k for c in cells for k in c.axes))  # dotted-path axes, e.g. train.optimizer
    est_cols = ("est. speed", "est. train", "est. total") if estimates else ()
    cudnn = any(c.cudnn_benchmark is not None for c in cells)
    for col in (
        "#",
        "id",
        "model",
        "family",
        "res",
        "bs",
        "precision",
        "channels_last",
        "compile",
        *(["cudnn_benchmark"] if cudnn else []),
        "strategy",
        "seed",
        *swept,
        "measure",
        *est_cols,
    ):
        table.add_column(col, justify="right" if col.startswith("est.") else "left")
    for i, c in enumerate(cells, 1):
        strategy = c.strategy if "train" in c.measure else "—"
        est: tuple[str, ...] = ()
        if estimates:
            e = estimates[i - 1]
            est = (
                duration(e["speed"]) if "speed" in c.measure else "—",
                duration(e["train"] + e["data"]) if "train" in c.measure else "—",
                duration(e["total"]),
            )
        table.add_row(
            str(i),
            c.id,
            c.model,
            c.family,
            str(c.resolution),
            str(c.batch_size),
            c.precision,
            str(c.channels_last),
            str(c.compile),
            *([str(c.cudnn_benchmark)] if cudnn else []),
            strategy,
            str(c.seed),
            *(str(c.axes.get(k, c.value(k))) for k in swept),
            ",".join(c.measure),
            *est,
        )
    return table


def _plan_summary(loaded, cells: list, estimates) -> Table:
    """One row per model: how many cells, and the values each axis takes among them."""
    title = f"{loaded.name}" + (f" (profile {loaded.profile})" if loaded.profile else "")
    table = Table(title=f"{title}: {len(cells)} cells, summarised per model (bench plan --json lists every cell)")
    for col in (
        "model",
        "cells",
        "resolutions",
        "batch sizes",
        "precisions",
        "strategies",
        "seeds",
        *(["est. total"] if estimates else []),
    ):
        table.add_column(col, justify="right" if col in ("cells", "est. total") else "left")
    by_model: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        by_model.setdefault(c.model, []).append(i)
    for model, idx in by_model.items():
        group = [cells[i] for i in idx]

        def values(attr: str, group: list = group) -> str:
            seen = list(dict.fromkeys(str(getattr(c, attr)) for c in group))
            return ", ".join(seen[:6]) + (f", … ({len(seen)})" if len(seen) > 6 else "")

        est = [duration(sum(estimates[i]["total"] for i in idx))] if estimates else []
        table.add_row(
            model,
            str(len(group)),
            values("resolution"),
            values("batch_size"),
            values("precision"),
            values("strategy"),
            values("seed"),
            *est,
        )
    return table
