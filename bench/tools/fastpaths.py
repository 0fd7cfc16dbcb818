"""CPU fast paths: which execution options make inference and training faster on this machine.

`measure_fastpaths` times each model at each resolution under a baseline (fp32, contiguous memory, the
default thread count, eager) and under one change at a time: channels_last, one thread, torch.compile,
bf16 autocast. Variants are measured round-robin (baseline, variant, baseline, ...) so a shared
machine's changing load falls on all of them alike, and each is reported as a ratio of throughputs
against the baseline measured in the same round (> 1: faster). `bench cpu-fastpaths` prints the table
and writes it to results/cpu-fastpaths.json.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bench.models.builders import build_model

VARIANTS = ("baseline", "channels_last", "threads=1", "compile", "bf16")


@dataclass
class FastPathRow:
    model: str
    resolution: int
    mode: str  # "inference" or "train"
    variant: str
    batch_size: int
    img_s: float | None  # median over rounds
    ratio: float | None  # median over rounds of img/s / the same round's baseline img/s
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _throughput(step: Callable[[], Any], batch: int, min_time_s: float, min_iters: int = 3) -> float:
    step()  # warm-up (a compiled model compiles here)
    step()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - began < min_time_s:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def _runner(
    name: str, resolution: int, mode: str, variant: str, batch: int, num_classes: int = 10
) -> Callable[[], Any]:
    """A zero-argument step (one inference batch or one training step) set up for a variant."""
    model = build_model(name, num_classes=num_classes, resolution=resolution)
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, num_classes, (batch,))
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if variant == "bf16" else None
    if mode == "inference":
        model.eval()
        fn: nn.Module | Callable = torch.compile(model) if variant == "compile" else model

        def infer() -> Any:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                return fn(x)

        return infer
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    fn = torch.compile(model) if variant == "compile" else model

    def train() -> None:
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = fn(x)
        nn.functional.cross_entropy(logits.float(), y).backward()
        opt.step()

    return train


def measure_fastpaths(
    models: list[str],
    resolutions: list[int],
    *,
    modes: tuple[str, ...] = ("inference", "train"),
    variants: tuple[str, ...] = VARIANTS,
    rounds: int = 2,
    min_time_s: float = 0.5,
    batch_for: Callable[[int, str], int] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[FastPathRow]:
    """Throughput of each (model, resolution, mode) under each variant, with its ratio to the baseline."""
    batch_for = batch_for or (lambda res, mode: 16 if res <= 64 else 4)
    default_threads = torch.get_num_threads()
    rows: list[FastPathRow] = []
    for name in models:
        for res in resolutions:
            for mode in modes:
                batch = batch_for(res, mode)
                steps: dict[str, Callable[[], Any]] = {}
                notes: dict[str, str] = {}
                for v in variants:
                    try:
                        t0 = time.perf_counter()
                        steps[v] = _runner(name, res, mode, v, batch)
                        if v == "compile":  # compiling happens on the first call: time it apart
                            steps[v]()
                            notes[v] = f"compiled in {time.perf_counter() - t0:.0f} s"
                    except Exception as exc:  # noqa: BLE001 - a variant that cannot run here is reported as such
                        notes[v] = (
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
                            if str(exc)
                            else type(exc).__name__
                        )
                rates: dict[str, list[float]] = {v: [] for v in variants}
                ratios: dict[str, list[float]] = {v: [] for v in variants}
                for _ in range(rounds):
                    base = None
                    for v in variants:
                        if v not in steps:
                            continue
                        torch.set_num_threads(1 if v == "threads=1" else default_threads)
                        try:
                            rate = _throughput(steps[v], batch, min_time_s)
                        except Exception as exc:  # noqa: BLE001
                            notes[v] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
                            steps.pop(v)
                            continue
                        finally:
                            torch.set_num_threads(default_threads)
                        rates[v].append(rate)
                        if v == "baseline":
                            base = rate
                        if base:
                            ratios[v].append(rate / base)
                for v in variants:
                    row = FastPathRow(
                        name,
                        res,
                        mode,
                        v,
                        batch,
                        statistics.median(rates[v]) if rates[v] else None,
                        statistics.median(ratios[v]) if ratios[v] else None,
                        notes.get(v, ""),
                    )
                    rows.append(row)
                    if log:
                        log(
                            f"{name}@{res} {mode} {v}: "
                            + (f"{row.img_s:.1f} img/s, x{row.ratio:.2f}" if row.img_s else row.note)
                        )
    return rows
