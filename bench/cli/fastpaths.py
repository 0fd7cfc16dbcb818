"""`bench cpu-fastpaths`: which execution options make this CPU faster."""

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
from bench.models import get_entry


def cpu_fastpaths(
    models: str = typer.Option(
        "resnet18,mobilenet_v2,efficientnet_b0", "--models", help="Comma-separated registry names."
    ),
    resolutions: str = typer.Option("64,224", "--resolutions", help="Comma-separated resolutions."),
    modes: str = typer.Option("inference,train", "--modes", help="inference, train or both."),
    variants: str = typer.Option(
        ",".join(["baseline", "channels_last", "threads=1", "compile", "bf16"]),
        "--variants",
        help="baseline (fp32, contiguous, default threads, eager) and changes to it: channels_last, threads=1, compile, bf16.",
    ),
    rounds: int = typer.Option(
        2, "--rounds", help="Round-robin rounds (each variant once per round, beside the baseline)."
    ),
    min_time_s: float = typer.Option(0.5, "--min-time", help="Seconds of timed steps per variant and round."),
    out: Path = typer.Option(
        Path("results/cpu-fastpaths.json"), "--out", "-o", help="Where the table is written (JSON)."
    ),
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
            raise InputError(
                f"unknown variant or mode: {', '.join(bad)}",
                hint=f"variants: {', '.join(VARIANTS)}; modes: inference, train",
            )
        if "baseline" not in variant_list:
            variant_list = ("baseline", *variant_list)
    except (InputError, ValueError) as exc:
        fail_input(exc if isinstance(exc, InputError) else InputError(str(exc), field="--resolutions"))
        return
    rows = measure_fastpaths(
        names,
        res,
        modes=mode_list,
        variants=variant_list,
        rounds=rounds,
        min_time_s=min_time_s,
        log=lambda m: err_console.print(f"[dim]{escape(m)}[/]", highlight=False),
    )
    table = Table(
        title=f"CPU fast paths: throughput ratio to fp32, contiguous, {torch.get_num_threads()} threads, eager (> 1: faster)"
    )
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
                table.add_row(name, str(r_), mode, str(base.batch_size), fmt(base.img_s), *cells)
    console.print(table)
    notes = [f"{r.model}@{r.resolution} {r.mode} {r.variant}: {r.note}" for r in rows if r.note]
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]", highlight=False)
    env = capture_env(torch.device("cpu"))
    doc = {
        "rows": [r.to_dict() for r in rows],
        "env": {
            k: env.get(k)
            for k in (
                "time_utc",
                "cpu_model",
                "cpu_cores_usable",
                "torch_threads",
                "cpu_capability",
                "torch",
                "machine",
            )
        },
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, _json.dumps(doc, indent=1) + "\n")
        console.print(f"written: {out}")
    except OSError as exc:
        err_console.print(f"[yellow]not written:[/] {escape(str(exc))}")
