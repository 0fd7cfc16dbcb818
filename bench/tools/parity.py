"""Speed parity: bench's `speed` measurement against a plain reference loop written to timm's method.

The reference (`reference_loop`) is deliberately independent of bench's timing code: it is the method of
timm's `benchmark.py` (InferenceBenchmarkRunner), written out again in a dozen lines:

- the model in eval mode, the input allocated once on the device (channels_last when asked),
- `torch.inference_mode()` (timm uses `no_grad`; inference_mode is the same work minus version counters),
- autocast for bf16/fp16 (bench's precisions are autocast precisions, so the reference uses autocast too;
  timm's `--precision bfloat16` would instead cast the weights, a different computation),
- `warmup_iters` untimed calls, then `bench_iters` calls, each step's end synchronised with the device
  (timm's `cuda_timestamp(sync=True)`),
- throughput = images / wall time from the first timed call's start to the last one's synchronised end.

`compare` runs bench's own measurement of a cell (the runner's `run_cell`: the model built as a cell
builds it, `Speed.measure` with the suite's speed settings; or a fresh child process per round with
`isolation="process"`, as `bench run` isolates speed cells) and the reference side by side, interleaved
(reference, bench, reference, bench, ... with the order flipped every other round so that a drift in the
machine's load hits both alike), for several rounds, and returns per model and precision the ratio
bench img/s / reference img/s: its median over rounds and spread (min, max, interquartile range).

On a machine shared with other jobs wall time also counts the time this process waited for a core.
`clock="thread_cpu"` (CPU, one torch thread, bench in this process) times both sides with the calling
thread's CPU time instead (`time.thread_time`: with one thread all of a model's work runs in it), which
measures the work each loop does per image whatever the machine's load: the check for extra work in
bench's timed region that a busy machine's wall-clock noise hides.

bench's headline throughput is batch / median batch latency; the reference's is the mean rate (total
images / total time), as timm reports. Three ratios are returned: `ratio` (bench's headline over the
reference's mean rate: the two figures a user would put side by side), and two that apply one statistic
to both loops' calls, so that they compare methods alone: `ratio_mean` (bench's mean rate,
`throughput_mean_img_s`, over the reference's) and `ratio_of_medians` (bench's headline over the
reference's batch / median call time). On a quiet GPU the three agree; on a shared CPU, where slow
calls come in bursts, a median-based rate runs a few percent above a mean-based one (here 0-6%), and
`ratio` carries that difference of statistic on top of any difference of method.

Both loops run in one process, and on Linux glibc's allocator makes a CPU call's cost depend on that
process's history: whether a call faults its activations' pages in afresh (here 16,000-17,000 faults and
30-40 ms of kernel time per resnet18 batch; 9,400 per efficientnet_b0 batch in bench's loop and 0 in the
reference's) changed from one loop to the other with what ran before them, not with their method
(bench.platform.allocator). `bench parity` therefore pins glibc's heap first
(`allocator="pinned"`, recorded in the row) and records page faults per call on both sides.

Parity at the limit: with `best=True` every round also runs the reference loop in a fresh process started with
the heap pinned (`best_loop`: bench.platform.allocator.process_env("pinned")), the best plain loop this machine
gives, whatever state this process is in; `ratio_to_best` is bench's headline over its batch / median call time
(median over rounds). With `allocator="default"` that says how much the default allocator costs bench's figure;
`bench run`'s own default (the suite's `allocator`, pinned on a CPU) is what it should come close to.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.core.cell import Cell
from bench.core.stats import percentile
from bench.execution.cell import run_cell, seed_everything
from bench.execution.isolation import ForkServer, run_cell_isolated
from bench.measure import speed as speed_module
from bench.measure.catalogue import PAGE_FAULTS, THROUGHPUT, THROUGHPUT_MEAN
from bench.measure.flops import count_flops
from bench.measure.speed import SpeedSettings
from bench.measure.timing import time_loop
from bench.models import get_entry
from bench.models.builders import build_model
from bench.platform.allocator import PINNED, PINNED_HEAP_ENV, minor_faults, pin_glibc_heap, process_env
from bench.platform.device import DTYPES, precision_unsupported, synchronize
from bench.platform.env import perf_env_vars
from bench.platform.peaks import mfu_for


@dataclass(frozen=True)
class ReferenceResult:
    images: int  # images in the timed calls only
    calls: int  # timed calls
    warmup_calls: int
    elapsed_s: float
    step_times_s: tuple[float, ...]
    minor_faults: int | None = None  # page faults over the timed calls (bench.platform.allocator.minor_faults)

    @property
    def img_s(self) -> float:
        return self.images / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    @property
    def median_img_s(self) -> float:
        """Images per call / the median call time: the statistic of bench's headline, on this loop's calls."""
        m = statistics.median(self.step_times_s)
        return self.images / self.calls / m if m > 0 else float("inf")

    @property
    def page_faults_per_call(self) -> float | None:
        return None if self.minor_faults is None else self.minor_faults / self.calls


def reference_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    device: torch.device,
    precision: str = "fp32",
    warmup_iters: int = 10,
    bench_iters: int = 40,
    clock: Callable[[], float] = time.perf_counter,
) -> ReferenceResult:
    """timm's inference benchmark loop (see the module docstring), on a prepared model and input."""
    if bench_iters < 1 or warmup_iters < 0:
        raise ValueError("bench_iters must be >= 1 and warmup_iters >= 0")
    model.eval()
    amp = (
        torch.autocast(device_type=device.type, dtype=DTYPES[precision])
        if precision != "fp32"
        else contextlib.nullcontext()
    )
    steps: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup_iters):
            with amp:
                model(x)
            synchronize(device)
        images = 0
        faults = minor_faults() if device.type == "cpu" else None  # host page faults say nothing of a GPU's call
        start = clock()
        for _ in range(bench_iters):
            t0 = clock()
            with amp:
                model(x)
            synchronize(device)
            steps.append(clock() - t0)
            images += x.shape[0]
        elapsed = clock() - start
        faults = minor_faults() - faults if faults is not None else None
    return ReferenceResult(
        images=images,
        calls=bench_iters,
        warmup_calls=warmup_iters,
        elapsed_s=elapsed,
        step_times_s=tuple(steps),
        minor_faults=faults,
    )


@dataclass
class ParityRow:
    model: str
    precision: str
    batch_size: int
    resolution: int
    channels_last: bool
    device: str
    threads: int
    isolation: str
    rounds: int
    clock: str
    ratio: float  # median over rounds of bench img/s (headline) / reference img/s
    ratio_min: float
    ratio_max: float
    ratio_iqr: float
    ratio_mean: float  # median over rounds of bench's mean-rate img/s / reference img/s
    bench_img_s: float  # medians over rounds
    reference_img_s: float
    ratios: list[float] = field(default_factory=list)
    bench_samples: list[float] = field(default_factory=list)
    reference_samples: list[float] = field(default_factory=list)
    control: dict[str, Any] | None = (
        None  # with control=True: the A/A ratios (second reference run / first), see compare
    )
    ratio_of_medians: float | None = (
        None  # median over rounds of bench's headline / the reference's batch / median call time
    )
    env_vars: dict[str, str] = field(
        default_factory=dict
    )  # speed-relevant environment variables set (bench.platform.env.perf_env_vars)
    allocator: dict[str, Any] | None = None  # with allocator="pinned": what bench.platform.allocator.pin_glibc_heap did
    bench_faults_per_call: float | None = None  # medians over rounds of page faults per model call (CPU)
    reference_faults_per_call: float | None = None
    gflops_per_image: float | None = None  # forward FLOPs (2 x MACs) per image, when asked
    mfu: dict[str, Any] | None = None
    # with best=True: the reference loop in a fresh process with the heap pinned (best_loop), per round
    ratio_to_best: float | None = None  # median over rounds of bench's headline / the best loop's batch / median call
    best_img_s: float | None = None  # median over rounds of the best loop's batch / median call time
    best_faults_per_call: float | None = None
    best_samples: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def within(self, tolerance: float = 0.05) -> bool:
        """Parity verdict: both like-for-like ratios (mean rate over mean rate, median over median) within
        `tolerance` of 1. `ratio`, bench's median headline over timm's mean rate, is shown beside it but
        not judged: on a shared CPU it also carries the median-vs-mean gap, a choice of statistic."""
        same = [self.ratio_mean] + ([self.ratio_of_medians] if self.ratio_of_medians is not None else [])
        return all(abs(r - 1) <= tolerance for r in same)


_BEST_LOOP = """
import json, sys, torch
from bench.execution.cell import seed_everything
from bench.models.builders import build_model
from bench.tools.parity import reference_loop
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
seed_everything(0)
fmt = torch.channels_last if a["channels_last"] else torch.contiguous_format
model = build_model(a["model"], num_classes=a["num_classes"], resolution=a["resolution"]).to(memory_format=fmt)
x = torch.randn(a["batch_size"], 3, a["resolution"], a["resolution"]).contiguous(memory_format=fmt)
r = reference_loop(model, x, device=torch.device("cpu"), precision=a["precision"],
                   warmup_iters=a["warmup_iters"], bench_iters=a["bench_iters"])
print(json.dumps({"img_s": r.img_s, "median_img_s": r.median_img_s, "faults_per_call": r.page_faults_per_call}))
"""


def best_loop(
    model: str,
    *,
    batch_size: int,
    resolution: int,
    precision: str = "fp32",
    channels_last: bool = False,
    num_classes: int = 1000,
    warmup_iters: int = 10,
    bench_iters: int = 40,
    threads: int | None = None,
) -> dict[str, Any]:
    """The reference loop on the CPU in a fresh process started with glibc's heap pinned (the best plain loop: no
    allocator history, no page faults of its own making): {'img_s', 'median_img_s', 'faults_per_call'}."""
    args = {
        "model": model,
        "batch_size": batch_size,
        "resolution": resolution,
        "precision": precision,
        "channels_last": channels_last,
        "num_classes": num_classes,
        "warmup_iters": warmup_iters,
        "bench_iters": bench_iters,
        "threads": threads or torch.get_num_threads(),
    }
    out = subprocess.run(
        [sys.executable, "-c", _BEST_LOOP, json.dumps(args)],
        env=process_env(PINNED),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the pinned plain loop of {model} failed: {out.stderr.strip()[-1000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(bench: list[float], reference: list[float], bench_mean: list[float] | None = None) -> dict[str, Any]:
    """Per-round ratios bench / reference and their median, min, max and interquartile range."""
    if not bench or len(bench) != len(reference):
        raise ValueError("need one bench and one reference figure per round")
    ratios = [b / r for b, r in zip(bench, reference)]
    means = [b / r for b, r in zip(bench_mean or bench, reference)]
    return {
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_iqr": percentile(sorted(ratios), 75) - percentile(sorted(ratios), 25),
        "ratio_mean": statistics.median(means),
        "bench_img_s": statistics.median(bench),
        "reference_img_s": statistics.median(reference),
        "ratios": ratios,
    }


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


CLOCKS = {"wall": time.perf_counter, "thread_cpu": time.thread_time}


def _bench_round(cell, device: torch.device, isolation: str, server, clock: str = "wall") -> dict[str, Any]:
    from unittest import mock

    if isolation == "process":
        result = run_cell_isolated(cell, device, server=server)
    elif clock == "wall":
        result = run_cell(cell, device)
    else:  # the same measurement, its loop reading another clock
        timed = lambda *a, **k: time_loop(*a, **{**k, "clock": CLOCKS[clock]})  # noqa: E731
        with mock.patch.object(speed_module, "time_loop", timed):
            result = run_cell(cell, device)
    speed = result.measurements.get("speed", {})
    if result.status != "ok" or speed.get("status") != "ok":
        raise RuntimeError(f"bench's speed measurement of {cell.label()} did not run: {result.reason}")
    return speed


def _round_order(r: int, control: bool) -> tuple[str, ...]:
    """Which loop runs when in round `r`: the order flips every other round so a drift in the machine's
    load hits both sides alike; with the control, the two reference runs bracket bench."""
    if control:
        return ("reference", "bench", "control") if r % 2 == 0 else ("control", "bench", "reference")
    return ("reference", "bench") if r % 2 == 0 else ("bench", "reference")


def compare(
    models: list[str],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    resolution: int = 224,
    precisions: tuple[str, ...] | list[str] = ("fp32",),
    channels_last: bool = False,
    rounds: int = 5,
    warmup_iters: int = 10,
    bench_iters: int = 40,
    speed_settings: dict[str, Any] | None = None,
    isolation: str = "none",
    num_classes: int = 1000,
    with_mfu: bool = False,
    clock: str = "wall",
    control: bool = False,
    allocator: str = "default",
    best: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[ParityRow]:
    """bench's speed measurement and the reference loop, interleaved for `rounds` rounds per model and
    precision; one ParityRow each. `speed_settings` are bench's `settings.speed` (its defaults if None).

    `control=True` adds an A/A control: each round runs the reference loop a second time, on the other side
    of bench (reference, bench, reference), and `row.control` holds second / first per round, summarised
    like the main ratio. The reference loop does not change between its two runs, so the control's spread
    is this machine's own noise over the time bench's round takes: a bench/reference ratio off 1 by no more
    than the control's is noise, not a difference of method.

    `allocator="pinned"` serves every block from glibc's heap and does not trim it, for this process (and, through
    its environment, the fork server's with `isolation="process"`), before anything runs
    (bench.platform.allocator; process-wide and permanent, so `bench parity` asks for it and a library call does not
    by default): then neither loop's page faults depend on what the other allocated before it. Page faults
    per call are recorded for both sides either way (`bench_faults_per_call`, `reference_faults_per_call`).

    `best=True` (CPU): every round also runs `best_loop`, the reference loop in a fresh pinned process, and the row
    gets `ratio_to_best`, `best_img_s` and `best_faults_per_call` (see the module docstring)."""
    if isolation not in ("none", "process"):
        raise ValueError("isolation must be 'none' or 'process'")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    device = torch.device(device)
    if best and (device.type != "cpu" or clock != "wall"):
        raise ValueError("best (the pinned plain loop in a fresh process) is a CPU wall-clock comparison")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}")
    if clock == "thread_cpu" and (device.type != "cpu" or torch.get_num_threads() != 1 or isolation != "none"):
        raise ValueError(
            "clock 'thread_cpu' needs device cpu, one torch thread (torch.set_num_threads(1)) and isolation 'none'"
        )
    if allocator not in ("default", "pinned"):
        raise ValueError("allocator must be 'default' or 'pinned'")
    settings = SpeedSettings.model_validate(speed_settings or {}).config_dump()
    pinned = pin_glibc_heap() if allocator == "pinned" else None
    say = progress or (lambda _msg: None)
    rows: list[ParityRow] = []
    # the fork server is a fresh interpreter, not a fork of this process: it gets the same settings through its environment
    server = (
        ForkServer(extra_env=PINNED_HEAP_ENV if pinned and pinned["pinned"] else None)
        if isolation == "process"
        else None
    )
    try:
        for name in models:
            entry = get_entry(name)
            seed_everything(0)
            model = build_model(name, num_classes=num_classes, resolution=resolution).to(device).eval()
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(memory_format=fmt)
            x = torch.randn(batch_size, 3, resolution, resolution, device=device).contiguous(memory_format=fmt)
            gflops = None
            if with_mfu:
                with torch.no_grad():
                    gflops = count_flops(model, x[:1]).flops / 1e9
            for precision in precisions:
                reason = precision_unsupported(device, precision)
                if reason:
                    say(f"{name} {precision}: skipped ({reason})")
                    continue
                cell = Cell(
                    model=name,
                    family=entry.family,
                    resolution=resolution,
                    batch_size=batch_size,
                    precision=precision,
                    channels_last=channels_last,
                    compile=False,
                    seed=0,
                    num_classes=num_classes,
                    measure=("speed",),
                    settings={"speed": settings},
                )
                bench_rates, bench_means, ref_rates, ref_medians, control_rates = [], [], [], [], []
                bench_faults, ref_faults = [], []
                best_rates, best_faults = [], []
                # Priming, discarded: the process's first calls of a model pay for its cold start (oneDNN
                # primitives, the allocator's first pages) beyond a 10-call warm-up (docs/measurements-log.md has
                # the figure). Without this, round 1 charges that to whichever side runs first.
                reference_loop(
                    model,
                    x,
                    device=device,
                    precision=precision,
                    warmup_iters=warmup_iters,
                    bench_iters=1,
                    clock=CLOCKS[clock],
                )
                for r in range(rounds):
                    for side in _round_order(r, control) + (("best",) if best else ()):
                        if side == "best":
                            fig = best_loop(
                                name,
                                batch_size=batch_size,
                                resolution=resolution,
                                precision=precision,
                                channels_last=channels_last,
                                num_classes=num_classes,
                                warmup_iters=warmup_iters,
                                bench_iters=bench_iters,
                            )
                            best_rates.append(fig["median_img_s"])
                            best_faults.append(fig["faults_per_call"])
                        elif side in ("reference", "control"):
                            ref = reference_loop(
                                model,
                                x,
                                device=device,
                                precision=precision,
                                warmup_iters=warmup_iters,
                                bench_iters=bench_iters,
                                clock=CLOCKS[clock],
                            )
                            if side == "reference":
                                ref_rates.append(ref.img_s)
                                ref_medians.append(ref.median_img_s)
                                ref_faults.append(ref.page_faults_per_call)
                            else:
                                control_rates.append(ref.img_s)
                        else:
                            speed = _bench_round(cell, device, isolation, server, clock)
                            bench_rates.append(speed[THROUGHPUT.key])
                            bench_means.append(speed[THROUGHPUT_MEAN.key])
                            bench_faults.append(speed.get(PAGE_FAULTS.key))
                    aa = f", A/A {control_rates[-1] / ref_rates[-1]:.3f}" if control else ""
                    say(
                        f"{name} {precision} round {r + 1}/{rounds}: bench {bench_rates[-1]:.1f} img/s, "
                        f"reference {ref_rates[-1]:.1f} img/s, ratio {bench_rates[-1] / ref_rates[-1]:.3f}{aa}"
                    )
                s = summarize(bench_rates, ref_rates, bench_means)
                row = ParityRow(
                    model=name,
                    precision=precision,
                    batch_size=batch_size,
                    resolution=resolution,
                    channels_last=channels_last,
                    device=str(device),
                    threads=torch.get_num_threads(),
                    isolation=isolation,
                    rounds=rounds,
                    clock=clock,
                    bench_samples=bench_rates,
                    reference_samples=ref_rates,
                    gflops_per_image=gflops,
                    env_vars=perf_env_vars(),
                    allocator=pinned,
                    bench_faults_per_call=_median_or_none(bench_faults),
                    reference_faults_per_call=_median_or_none(ref_faults),
                    ratio_of_medians=summarize(bench_rates, ref_medians)["ratio"],
                    **s,
                )
                if best:
                    row.best_samples = best_rates
                    row.best_img_s = statistics.median(best_rates)
                    row.best_faults_per_call = _median_or_none(best_faults)
                    row.ratio_to_best = summarize(bench_rates, best_rates)["ratio"]
                if control:
                    c = summarize(control_rates, ref_rates)
                    row.control = {
                        "ratio": c["ratio"],
                        "ratio_min": c["ratio_min"],
                        "ratio_max": c["ratio_max"],
                        "ratio_iqr": c["ratio_iqr"],
                        "ratios": c["ratios"],
                        "control_samples": control_rates,
                    }
                if with_mfu and gflops is not None:
                    row.mfu = {
                        "bench": mfu_for(device, precision, gflops * 1e9 * row.bench_img_s),
                        "reference": mfu_for(device, precision, gflops * 1e9 * row.reference_img_s),
                    }
                rows.append(row)
            del model, x
    finally:
        if server is not None:
            server.close()
    return rows
