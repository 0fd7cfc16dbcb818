"""`bench parity`: bench's speed measurement against a plain reference loop."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.console import (
    FLOPS_NOTE,
    STATE,
    console,
    err_console,
    fail_input,
)
from bench.core.errors import InputError
from bench.core.yamlfile import loads_yaml
from bench.models import get_entry


def _allocator_label(rows: list, asked: str) -> str:
    pinned = next((r.allocator for r in rows if r.allocator), None)
    if pinned is None:
        return asked
    if pinned.get("pinned"):
        return f"{pinned['allocator']} pinned (no mmap, trim above {pinned['trim_threshold'] // 2**20} MiB)"
    return f"not pinned ({pinned.get('reason')})"


PARITY_HELP = """Speed parity: bench's `speed` measurement against a plain reference loop written to timm's
benchmark.py method (warm-up, synchronised timing, inference_mode, pre-allocated input), interleaved over
several rounds; prints bench img/s / reference img/s per model and precision (median, min-max, IQR).

  bench parity --models efficientnet_b0 resnet18 --device cpu --batch 8 --resolution 224 --precision fp32 bf16 --mfu
"""


def parity(ctx: typer.Context) -> None:
    import argparse
    import json as _json

    parser = argparse.ArgumentParser(
        prog="bench parity", description=PARITY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", required=True, help="registry names (bench list models)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds (reference, bench, bench, reference, ...)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="reference: untimed warm-up calls (timm's default 10)")
    parser.add_argument("--iters", type=int, default=40, help="reference: timed calls (timm's default 40)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for both sides (default: torch's)")
    parser.add_argument(
        "--isolation",
        choices=["none", "process"],
        default="none",
        help="bench side in this process, or a fresh child process per round as `bench run` isolates speed cells",
    )
    parser.add_argument(
        "--set",
        dest="speed",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bench's speed setting, e.g. --set min_time_s=2 (repeatable)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "thread_cpu"],
        default="wall",
        help="thread_cpu: time both sides by this thread's CPU time (CPU, --threads 1): the work per image, "
        "whatever the machine's load",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="A/A control: run the reference loop twice per round, bracketing bench; the spread of second/first "
        "is this machine's own noise, against which to read bench/reference",
    )
    parser.add_argument(
        "--allocator",
        choices=["pinned", "default"],
        default="pinned",
        help="pinned (default): serve every block from glibc's heap, not trimmed below 2 GiB, in this process "
        "(and the fork server's) first, so that neither loop's "
        "page faults depend on what the other allocated before it (bench.platform.allocator); default: leave glibc as is",
    )
    parser.add_argument(
        "--best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run the plain loop in a fresh process with the heap pinned each round (the best plain loop) and "
        "give bench / best (default: on for a CPU with --clock wall)",
    )
    parser.add_argument(
        "--mfu", action="store_true", help="also count forward FLOPs and give MFU against the device's peak"
    )
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
        rows = compare(
            args.models,
            device=device,
            batch_size=args.batch,
            resolution=args.resolution,
            precisions=args.precision,
            channels_last=args.channels_last,
            rounds=args.rounds,
            warmup_iters=args.warmup,
            bench_iters=args.iters,
            speed_settings=speed,
            isolation=args.isolation,
            with_mfu=args.mfu,
            clock=args.clock,
            control=args.control,
            allocator=args.allocator,
            best=args.best if args.best is not None else (device.type == "cpu" and args.clock == "wall"),
            progress=lambda msg: console.print(f"  {escape(msg)}", highlight=False),
        )
    except InputError as exc:
        fail_input(exc)
        return
    except Exception as exc:  # pydantic's validation error for a bad --set, an unknown model
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}")
        raise typer.Exit(code=2) from None
    table = Table(
        title=f"speed parity on {device} ({torch.get_num_threads()} threads), batch {args.batch}, {args.resolution} px, "
        f"{args.rounds} rounds, bench isolation {args.isolation}, clock {args.clock}, allocator {_allocator_label(rows, args.allocator)}"
    )
    for col in (
        "model",
        "precision",
        "bench img/s",
        "reference img/s",
        "ratio (median)",
        "min-max",
        "IQR",
        "ratio of means",
        "ratio of medians",
        "within 5% (both)",
    ):
        table.add_column(col)
    if args.control:
        table.add_column("A/A control (median, min-max)")
    if args.mfu:
        table.add_column("MFU (bench)")
    table.add_column("page faults/call (bench / ref)")
    with_best = any(r.ratio_to_best is not None for r in rows)
    if with_best:
        table.add_column("best loop img/s (pinned)")
        table.add_column("bench / best")
    for r in rows:
        cells = [
            r.model,
            r.precision,
            f"{r.bench_img_s:.1f}",
            f"{r.reference_img_s:.1f}",
            f"{r.ratio:.3f}",
            f"{r.ratio_min:.3f}-{r.ratio_max:.3f}",
            f"{r.ratio_iqr:.3f}",
            f"{r.ratio_mean:.3f}",
            f"{r.ratio_of_medians:.3f}",
            "yes" if r.within(0.05) else "no",
        ]
        if args.control:
            c = r.control
            assert c is not None  # --control asked for it
            cells.append(f"{c['ratio']:.3f} ({c['ratio_min']:.3f}-{c['ratio_max']:.3f})")
        if args.mfu:
            m = (r.mfu or {}).get("bench") or {}
            cells.append(
                f"{m['utilisation']:.1%}"
                if m.get("utilisation") is not None
                else f"— ({m.get('reason') or 'no FLOP count'})"
            )
        cells.append(
            " / ".join(
                "—" if v is None else f"{v:,.0f}" for v in (r.bench_faults_per_call, r.reference_faults_per_call)
            )
        )
        if with_best:
            cells.append("—" if r.best_img_s is None else f"{r.best_img_s:.1f}")
            cells.append("—" if r.ratio_to_best is None else f"{r.ratio_to_best:.3f}")
        table.add_row(*cells)
    console.print(table)
    console.print(
        "ratio = bench's headline img/s (batch / median batch latency) / the reference's (images / wall time); "
        "ratio of means / of medians apply one statistic to both loops (mean rate; batch / median call time); "
        "'within 5%' judges those two. "
        + (
            "A/A control = the reference loop's second run / its first in the same round: the machine's own noise. "
            if args.control
            else ""
        )
        + (
            "best loop = the reference loop in a fresh process with the heap pinned, each round: bench / best is "
            "bench's headline over its batch / median call time, how close bench comes to what this machine does. "
            if with_best
            else ""
        )
        + FLOPS_NOTE
    )
    if args.json:
        args.json.write_text(_json.dumps([r.to_dict() for r in rows], indent=1))
