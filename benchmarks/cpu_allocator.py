"""Issue 22's measurements: `bench run`'s CPU speed figures against plain loops, each side a fresh process,
interleaved round by round (the order flips every other round), so a drift in the machine's load hits all sides.

Per model and round:

- `bench`: `bench run` of a one-cell suite (speed only, its default settings, batch/resolution/threads as given)
  with the suite's `allocator` unset (the default: pinned on a CPU); the runner is itself a default process;
- `plain_pinned`: a plain timm-method loop (bench.tools.parity.reference_loop) in a process started with glibc's
  heap pinned (bench.platform.allocator.PINNED_HEAP_ENV): the best plain loop;
and, in the first `--default-rounds` rounds:
- `bench_default`: `bench run` with `allocator: default`;
- `plain_default`: the plain loop in a default process;
- `timm`: timm's own `benchmark.py` (`--timm-benchmark PATH`, not shipped with the timm package: take it from
  timm's repository) in a default process, on timm's build of the model.

Each figure is batch / median call time (img/s) and minor page faults per call over the timed calls (timm's script
reports its mean rate only). One JSON line per measurement goes to `--out`, and the summary (medians over rounds,
their ratios) is printed at the end. Run it with low priority on a shared machine:

    nice -n 5 python benchmarks/cpu_allocator.py --models efficientnet_b0 resnet18 --rounds 15 \\
        --timm-benchmark /tmp/timm_benchmark.py --out results/benchmarks/cpu-allocator.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure.catalogue import PAGE_FAULTS, THROUGHPUT
from bench.platform.allocator import process_env

ROOT = Path(__file__).resolve().parents[1]

PLAIN = """
import json, sys, torch
from bench.models.builders import build_model
from bench.tools.parity import reference_loop
name, batch, res, threads, warmup, iters = sys.argv[1], *map(int, sys.argv[2:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(name, num_classes=1000, resolution=res).eval()
x = torch.randn(batch, 3, res, res)
r = reference_loop(model, x, device=torch.device("cpu"), warmup_iters=warmup, bench_iters=iters)
print(json.dumps({"img_s": r.median_img_s, "mean_img_s": r.img_s, "faults_per_call": r.page_faults_per_call}))
"""

SUITE = """name: allocator-check
models: [{model}]
num_classes: 1000
device: cpu
threads: {threads}
matrix: {{batch_size: [{batch}], resolution: [{res}], precision: [fp32]}}
measure: [speed]
settings: {{speed: {speed}}}
"""


def _run(cmd: list[str], env: dict[str, str], timeout: int = 900) -> str:
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def plain(model: str, args, allocator: str) -> dict:
    env = process_env(allocator)
    cmd = [
        sys.executable,
        "-c",
        PLAIN,
        model,
        *map(str, (args.batch, args.resolution, args.threads, args.plain_warmup, args.plain_iters)),
    ]
    return json.loads(_run(cmd, env).strip().splitlines()[-1])


def bench(model: str, args, allocator: str | None, folder: Path) -> dict:
    suite = folder / f"{model}.yaml"
    suite.write_text(
        SUITE.format(model=model, threads=args.threads, batch=args.batch, res=args.resolution, speed=args.speed)
    )
    out = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    overrides = [f"allocator={allocator}"] if allocator else []
    if args.bench_via == "cli":
        cmd = [sys.executable, "-m", "bench", "run", str(suite), "--out", str(out / "run"), "--no-report"]
        cmd += [a for o in overrides for a in ("--set", o)]
        _run(cmd, process_env("default"))  # the runner: a default process, as a user starts it
    else:
        _run_path(suite, overrides, out / "run")
    (cell,) = [json.loads(p.read_text()) for p in (out / "run" / "cells").glob("*.json")]
    speed = cell["measurements"]["speed"]
    return {
        "img_s": speed[THROUGHPUT.key],
        "faults_per_call": speed[PAGE_FAULTS.key],
        "allocator": speed.get("allocator"),
        "mfu": speed.get("mfu"),
    }


def _run_path(suite: Path, overrides: list[str], out: Path) -> None:
    """What `bench run SUITE --out OUT --set ...` does to run its cells (the suite loaded and expanded, the local
    executor with the run's allocator, each speed cell in a fresh fork of the shared fork server), in this process:
    it saves the CLI's start-up (imports, environment capture) on every round, not what a cell measures."""
    import torch

    from bench.cli.console import load_cells, set_threads
    from bench.execution.executors import make_executor
    from bench.execution.sweep import run_cells
    from bench.platform.allocator import resolve
    from bench.store.run_store import RunStore

    loaded, cells = load_cells(str(suite), None, overrides)
    set_threads(loaded.threads)
    device = torch.device("cpu")
    executor = make_executor("local", isolation=loaded.isolation, allocator=resolve(loaded.allocator, device.type))
    run_cells(cells, RunStore.create(out), device, executor=executor)


def timm_benchmark(model: str, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        cmd = [sys.executable, args.timm_benchmark, "--model", model, "--bench", "inference", "--device", "cpu"]
        cmd += ["--batch-size", str(args.batch), "--img-size", str(args.resolution), "--num-classes", "1000"]
        cmd += ["--num-warm-iter", str(args.plain_warmup), "--num-bench-iter", str(max(args.plain_iters, 5))]
        cmd += ["--results-file", fh.name, "--results-format", "json"]
        env = process_env("default") | {"OMP_NUM_THREADS": str(args.threads)}
        _run(cmd, env)
        data = json.loads(Path(fh.name).read_text())
    row = data[0] if isinstance(data, list) else data
    return {"img_s": row["infer_samples_per_sec"], "faults_per_call": None}


def summarize(rows: list[dict]) -> dict:
    out: dict = {}
    for model in sorted({r["model"] for r in rows}):
        by_side: dict[str, list[dict]] = {}
        for r in rows:
            if r["model"] == model:
                by_side.setdefault(r["side"], []).append(r)
        med = {s: statistics.median(r["img_s"] for r in v) for s, v in by_side.items()}
        faults = {
            s: statistics.median(r["faults_per_call"] for r in v)
            for s, v in by_side.items()
            if all(r["faults_per_call"] is not None for r in v)
        }
        per_round = [
            b["img_s"] / p["img_s"]
            for b in by_side.get("bench", [])
            for p in by_side.get("plain_pinned", [])
            if b["round"] == p["round"]
        ]
        out[model] = {
            "rounds": {s: len(v) for s, v in by_side.items()},
            "img_s_median": med,
            "faults_per_call_median": faults,
            "bench_over_plain_pinned": med["bench"] / med["plain_pinned"] if "plain_pinned" in med else None,
            "bench_over_plain_pinned_per_round_median": statistics.median(per_round) if per_round else None,
            "bench_over_timm": med["bench"] / med["timm"] if "timm" in med else None,
            "bench_default_over_plain_default_faults": (
                faults["bench_default"] / faults["plain_default"]
                if faults.get("plain_default") and "bench_default" in faults
                else None
            ),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["efficientnet_b0", "resnet18"])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--default-rounds", type=int, default=5, help="rounds that also run the default-allocator sides")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timm-benchmark", default=None, help="path to timm's benchmark.py (its repository's)")
    p.add_argument("--timm-rounds", type=int, default=1, help="rounds that also run timm's benchmark.py")
    p.add_argument("--plain-warmup", type=int, default=3, help="the plain loops' (and timm's) untimed calls")
    p.add_argument("--plain-iters", type=int, default=10, help="the plain loops' (and timm's) timed calls")
    p.add_argument("--speed", default="{}", help="the one-cell suite's settings.speed, as YAML (default: bench's)")
    p.add_argument("--first-round", type=int, default=0, help="go on from this round (appending to --out)")
    p.add_argument("--summarize", type=Path, default=None, help="only print the summary of an earlier --out file")
    p.add_argument(
        "--bench-via",
        choices=["api", "cli"],
        default="api",
        help="cli: a `bench run` process per round; api: bench run's cell path in this process (_run_path)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "cpu-allocator.jsonl")
    args = p.parse_args()
    if args.summarize:
        rows = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        print(json.dumps({"summary": summarize(rows)}, indent=1))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-allocator-") as tmp:
        folder = Path(tmp)
        for r in range(args.first_round, args.rounds):
            sides = ["plain_pinned", "bench"]
            if r < args.default_rounds:
                sides += ["plain_default", "bench_default"]
            if r < args.timm_rounds and args.timm_benchmark:
                sides.append("timm")
            if r % 2:
                sides.reverse()
            for model in args.models:
                for side in sides:
                    t0 = time.time()
                    if side.startswith("plain"):
                        fig = plain(model, args, side.removeprefix("plain_"))
                    elif side == "timm":
                        fig = timm_benchmark(model, args)
                    else:
                        fig = bench(model, args, "default" if side == "bench_default" else None, folder)
                    row = {"round": r, "model": model, "side": side, "wall_s": time.time() - t0, **fig}
                    rows.append(row)
                    with args.out.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    summary = summarize(rows)
    print(json.dumps({"summary": summary, "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
