"""Repeated trials of the same-machine A/B gate (`bench gate`), as its issue asks, on a loaded machine.

    python benchmarks/gate_trials/run_trials.py --out /tmp/gate-trials [--plan aa:10,slow15:10,slow10:5,f1:2]

What it does, from the checkout it is run in (its HEAD is the base of every trial):
- makes the revisions under test as commits on refs/bench-trials/* (never on a branch): `slow15` and
  `slow10`, where resnet18 makes extra elementwise passes over every ReLU's output (MACs unchanged: the
  FLOP counter counts no elementwise op); `f1`, where Adam's learning rate is cut (the digits cells learn
  less); the number of passes is calibrated with a plain loop for the asked slowdown, and the slowdown
  then measured independently with a plain loop (interleaved, --plain-rounds rounds, fresh process per side and round);
- keeps one other process busy on one core for the whole time (a plain Python loop), as the issue asks,
  unless --no-load (when the machine is loaded anyway: each gate's load average is recorded);
- runs the gates in an interleaved order (aa, slow15, aa, slow15, ..., then slow10, f1) so that a partial
  series stays balanced, each `bench gate HEAD SUITE --head REF` with its exit code, wall time and verdict
  rows appended to OUT/trials.jsonl; a summary table at the end (and with --summary OUT alone).
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPEED_SUITE = HERE / "trial_speed.yaml"
MAX_ROUNDS = 24  # per-round CPU-time noise here: sd(log ratio) 0.03-0.09, so a 5% threshold needs up to ~20 rounds (~11 s each)
CONCURRENT = True  # both sides of a round at once (one thread each on the 2 cores): the same moment's load
F1_SUITE = HERE / "trial_f1.yaml"

BUILDERS = "bench/models/builders.py"
ANCHOR = "    return model.eval()\n\n\ndef classifier_prefix"
INJECT = '''    if name == "resnet18":  # gate trial: an injected slowdown, extra elementwise passes over activations
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.register_forward_hook(_trial_extra_passes)
    return model.eval()


def _trial_extra_passes(module, inputs, output):
    for _ in range({passes}):
        output = output.add(0.0)
    return output


def classifier_prefix'''
LOOP = "bench/measure/train/loop.py"
LR_ANCHOR = "return torch.optim.Adam(params, lr=s.lr,"
LR_INJECT = "return torch.optim.Adam(params, lr=s.lr * 0.01,"

PLAIN_LOOP = r"""
import sys, time, torch
sys.path.insert(0, sys.argv[1])
from bench.models.builders import build_model
torch.set_num_threads(1)
m = build_model("resnet18", num_classes=10).eval()
x = torch.randn(8, 3, 64, 64)
with torch.inference_mode():
    for _ in range(10):
        m(x)
    t = []
    for _ in range(20):
        s = time.perf_counter(); m(x); t.append(time.perf_counter() - s)
t.sort()
print(t[len(t) // 2])
"""


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_revision(name: str, edit, base: str) -> str:
    """A commit of `base` with `edit(root)` applied, kept at refs/bench-trials/NAME; its sha."""
    work = Path(tempfile.mkdtemp(prefix=f"trial-{name}-"))
    git("worktree", "add", "--detach", "--force", str(work), base)
    try:
        edit(work)
        git("-c", "user.name=trial", "-c", "user.email=trial@localhost", "commit", "-q", "-am", f"trial: {name}", cwd=work)
        sha = git("rev-parse", "HEAD", cwd=work)
        git("update-ref", f"refs/bench-trials/{name}", sha)
        return sha
    finally:
        git("worktree", "remove", "--force", str(work))


def inject_passes(passes: int):
    def edit(root: Path) -> None:
        p = root / BUILDERS
        text = p.read_text()
        assert text.count(ANCHOR) == 1, "builders.py changed: update the trial's anchor"
        p.write_text(text.replace(ANCHOR, INJECT.format(passes=passes)))

    return edit


def inject_lr(root: Path) -> None:
    p = root / LOOP
    text = p.read_text()
    assert text.count(LR_ANCHOR) == 1, "loop.py changed: update the trial's anchor"
    p.write_text(text.replace(LR_ANCHOR, LR_INJECT))


def plain_median(root: Path) -> float:
    out = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(root)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def plain_slowdown(passes: int, rounds: int) -> float:
    """Median over rounds of (injected / plain) plain-loop medians, each side a fresh process, ABAB."""
    base = Path(tempfile.mkdtemp(prefix="plain-base-"))
    slow = Path(tempfile.mkdtemp(prefix="plain-slow-"))
    git("worktree", "add", "--detach", "--force", str(base), "HEAD")
    git("worktree", "add", "--detach", "--force", str(slow), "HEAD")
    try:
        inject_passes(passes)(slow)
        ratios = []
        for r in range(rounds):
            pair = [base, slow] if r % 2 == 0 else [slow, base]
            t = {p: plain_median(p) for p in pair}
            ratios.append(t[slow] / t[base])
        return statistics.median(ratios)
    finally:
        git("worktree", "remove", "--force", str(base))
        git("worktree", "remove", "--force", str(slow))


CALIBRATE = r"""
import sys, time, torch
from torch import nn
sys.path.insert(0, sys.argv[1])
from bench.models.builders import build_model
torch.set_num_threads(1)
m = build_model("resnet18", num_classes=10).eval()
x = torch.randn(8, 3, 64, 64)
passes = [0]
def hook(module, inputs, output):
    for _ in range(passes[0]):
        output = output.add(0.0)
    return output
for mod in m.modules():
    if isinstance(mod, nn.ReLU):
        mod.register_forward_hook(hook)
def median_time(k):
    passes[0] = k
    t = []
    for _ in range(15):
        s = time.perf_counter(); m(x); t.append(time.perf_counter() - s)
    return sorted(t)[7]
with torch.inference_mode():
    for _ in range(5):
        m(x)
    plain, extra = [], []
    for _ in range(6):
        plain.append(median_time(0)); extra.append(median_time(20))
plain, extra = sorted(plain)[3], sorted(extra)[3]
print(plain, (extra - plain) / 20)
"""


def calibrate(target: float, rounds: int) -> tuple[int, float]:
    """Passes whose slowdown is about `target` (1.15), from one in-process estimate of a forward pass's time and
    of one extra pass's; then the slowdown measured independently with plain loops (`rounds`, fresh processes)."""
    out = subprocess.run([sys.executable, "-c", CALIBRATE, str(REPO)], check=True, capture_output=True, text=True)
    forward, per_pass = (float(v) for v in out.stdout.split())
    passes = max(1, round((target - 1) * forward / per_pass))
    print(f"calibrate {target}: forward {forward * 1e3:.2f} ms, one pass {per_pass * 1e3:.3f} ms -> {passes}", flush=True)
    return passes, plain_slowdown(passes, rounds) if rounds else float("nan")


def run_gate(kind: str, base: str, ref: str, out: Path, index: int) -> dict:
    suite = F1_SUITE if kind == "f1" else SPEED_SUITE
    target = out / "gates" / f"{index:02d}-{kind}"
    cmd = [sys.executable, "-m", "bench", "gate", base, str(suite), "--head", ref, "--out", str(target)]
    if kind != "f1":
        cmd += ["--rounds", "6", "--max-rounds", str(MAX_ROUNDS)] + (["--concurrent"] if CONCURRENT else [])
    start, load_before = time.time(), os.getloadavg()[0]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    try:
        verdict = json.loads((target / "gate.json").read_text())
    except (OSError, ValueError):
        verdict = {"error": done.stderr[-2000:]}
    return {
        "kind": kind,
        "ref": ref,
        "exit": done.returncode,
        "wall_s": round(wall, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "gate": verdict,
    }


def summary(out: Path) -> str:
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
    lines = ["| trial | gates | exit 0 | exit 1 | exit 3 | other | median wall s | rounds |", "|---|---|---|---|---|---|---|---|"]
    for kind in ("aa", "slow15", "slow10", "f1", "nightly"):
        got = [r for r in rows if r["kind"] == kind]
        if not got:
            continue
        codes = [r["exit"] for r in got]
        rounds = sorted(r["gate"].get("rounds_run", 0) for r in got)
        lines.append(
            f"| {kind} | {len(got)} | {codes.count(0)} | {codes.count(1)} | {codes.count(3)} | "
            f"{sum(c not in (0, 1, 3) for c in codes)} | {statistics.median(r['wall_s'] for r in got):.0f} | {rounds} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plan", default="aa:10,slow15:10,slow10:5,f1:2")
    ap.add_argument("--summary", action="store_true", help="print the summary of OUT and stop")
    ap.add_argument("--no-load", action="store_true", help="do not start the busy process")
    ap.add_argument("--passes", default="", help="slow15=21,slow10=10: skip the calibration, use these")
    ap.add_argument("--plain-rounds", type=int, default=15, help="rounds of the plain-loop check (0: skip it)")
    args = ap.parse_args()
    if args.summary:
        print(summary(args.out))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    plan = {k: int(v) for k, v in (item.split(":") for item in args.plan.split(","))}
    load = None if args.no_load else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meta: dict = {"head": git("rev-parse", "HEAD"), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        base = meta["head"]  # every gate's base, and both sides of the A/A gates: main may move meanwhile
        refs = {"aa": base}
        for kind, target in (("slow15", 1.15), ("slow10", 1.10)):
            given = dict(item.split("=") for item in args.passes.split(",") if item)
            if plan.get(kind):
                if kind in given:
                    passes = int(given[kind])
                    measured = plain_slowdown(passes, args.plain_rounds) if args.plain_rounds else float("nan")
                else:
                    passes, measured = calibrate(target, args.plain_rounds)
                refs[kind] = make_revision(kind, inject_passes(passes), base)
                meta[kind] = {
                    "passes": passes,
                    "plain_loop_slowdown": round(measured, 4),
                    "plain_loop_rounds": args.plain_rounds,
                    "sha": refs[kind],
                }
                print(f"{kind}: {passes} passes, plain loop {measured:.3f}x", flush=True)
        if plan.get("f1"):
            refs["f1"] = make_revision("f1", inject_lr, base)
            meta["f1"] = {"sha": refs["f1"]}
        (args.out / "meta.json").write_text(json.dumps(meta, indent=2))
        order: list[str] = []
        left = dict(plan)
        while any(left.values()):
            for kind in ("aa", "slow15", "slow10", "f1"):
                if left.get(kind):
                    order.append(kind)
                    left[kind] -= 1
        for i, kind in enumerate(order):
            row = run_gate(kind, base, refs[kind], args.out, i)
            with open(args.out / "trials.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{i:02d} {kind}: exit {row['exit']} in {row['wall_s']} s ({row['gate'].get('regressions')})", flush=True)
        print(summary(args.out))
    finally:
        if load is not None:
            load.kill()
        os.sync()


if __name__ == "__main__":
    main()
