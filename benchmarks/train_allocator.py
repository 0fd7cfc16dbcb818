"""Does pinning glibc's heap help CPU training, and what does it cost in memory? (issue 22)

A plain training loop (Adam, cross-entropy, random data: zero_grad, forward, backward, step) per model, each run a
fresh process started with the allocator's environment (bench.platform.allocator.process_env), pinned and default
interleaved round by round. Recorded per run: img/s (batch / median step time), minor page faults per step, the
process's peak resident memory (ru_maxrss) and peak address space (VmPeak: what `memory_limit_mb`'s RLIMIT_AS caps).

    nice -n 5 python benchmarks/train_allocator.py --models resnet18 efficientnet_b0 --resolution 64 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.platform.allocator import process_env

ROOT = Path(__file__).resolve().parents[1]

LOOP = """
import json, resource, statistics, sys, time, torch
from bench.models.builders import build_model
from bench.platform.allocator import describe, minor_faults
name, batch, res, threads, warmup, steps = sys.argv[1], *map(int, sys.argv[2:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(name, num_classes=50, resolution=res).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(batch, 3, res, res), torch.randint(0, 50, (batch,))
def step():
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(warmup):
    step()
times, faults = [], minor_faults()
for _ in range(steps):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
faults = (minor_faults() - faults) / steps
vm_peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmPeak:")) / 1024
print(json.dumps({"img_s": batch / statistics.median(times), "faults_per_step": faults,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vm_peak_mb": vm_peak,
                  "allocator": describe()["allocator"]}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "efficientnet_b0"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "train-allocator.jsonl")
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in range(args.rounds):
        for model in args.models:
            for allocator in ("pinned", "default") if r % 2 == 0 else ("default", "pinned"):
                cmd = [sys.executable, "-c", LOOP, model]
                cmd += map(str, (args.batch, args.resolution, args.threads, args.warmup, args.steps))
                out = subprocess.run(
                    cmd, env=process_env(allocator), cwd=ROOT, capture_output=True, text=True, check=True
                )
                row = {"round": r, "model": model, "side": allocator, **json.loads(out.stdout.strip().splitlines()[-1])}
                rows.append(row)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    for model in args.models:
        med = {
            side: {
                k: statistics.median(r[k] for r in rows if r["model"] == model and r["side"] == side)
                for k in ("img_s", "faults_per_step", "max_rss_mb", "vm_peak_mb")
            }
            for side in ("pinned", "default")
        }
        ratios = [
            a["img_s"] / b["img_s"]
            for a in rows
            for b in rows
            if a["model"] == b["model"] == model and a["round"] == b["round"]
            if a["side"] == "pinned" and b["side"] == "default"
        ]
        print(json.dumps({"model": model, "medians": med, "pinned_over_default_per_round": ratios}))


if __name__ == "__main__":
    main()
