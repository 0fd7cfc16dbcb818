"""A short measured calibration of this machine for the cost model (bench.plan.cost): a few seconds of
representative workloads, cached per machine in `results/.calibration.json`.

Keyed by device (CPU model or GPU name), torch version and thread count: a different machine, torch or
thread count calibrates again; `bench plan --recalibrate` forces it. What is measured (each the median of a few
calls after a warm-up):

- forwards (inference) and training steps (zero_grad, forward, backward) of resnet18 and mobilenet_v2 at
  several sizes (a tiny input, which is nearly all per-call cost, and the sizes quick runs use), a stack of
  depthwise 3x3 convolutions (grouped work alone) and a SiLU (elementwise work alone). Each point's
  dense, grouped and elementwise FLOPs and operator calls are counted as a plan counts a cell's
  (bench.plan.workload), and the seconds per FLOP of each kind and per call are fitted to all points at once by
  non-negative least squares on relative error: no single noisy point can make a rate negative or
  infinite. bf16/fp16 (only when a plan has cells in them): fp32's rates scaled by how much slower a
  resnet18 forward and the depthwise stack compute in them, each timed beside its fp32 twin;
- a fused Adam step over 4M parameters; building resnet18 (random init); copying and saving 16 MB of
  weights; the speed measurement's reference matmul; rendering and decoding synthetic images; and
  starting a Python that imports torch and bench (the isolation server, once per run).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.core.files import atomic_write, atomic_write_text
from bench.data.images import decode_file
from bench.data.synthetic import _styles, render
from bench.measure.flops import count_flops
from bench.measure.timing import reference_workload
from bench.models.builders import build_model
from bench.plan.cost import TRAIN_FLOPS_PER_FORWARD, Calibration
from bench.plan.workload import count_model, count_module
from bench.platform.device import autocast, synchronize
from bench.platform.env import _cpu_model

CALIBRATION_VERSION = 3  # 3: rates fitted by non-negative least squares over many points


def _best_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """The median of `repeats` calls after `warmup`. Not the minimum: a run meets the machine as it is, and
    on a shared machine the fastest call predicted training 1.5x too fast (the median tracks the load)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux): what importing torch, bench and the CLI took here."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_key(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    return {
        "version": CALIBRATION_VERSION,
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _key_str(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


def load_cached(path: Path, key: dict[str, Any]) -> Calibration | None:
    try:
        data = json.loads(path.read_text())
        entry = data.get(_key_str(key))
        return Calibration.from_dict(entry) if entry else None
    except (OSError, ValueError, TypeError):
        return None


def save_cached(path: Path, cal: Calibration) -> None:
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    data[_key_str(cal.key)] = cal.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass


def get_calibration(
    device: torch.device,
    path: Path,
    *,
    precisions: tuple[str, ...] = ("fp32",),
    recalibrate: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[Calibration, bool]:
    """(calibration, whether anything was measured now): the cached one for this machine, completed with
    any precision it lacks (bf16/fp16 are measured only when a plan has cells in them), or a fresh one."""
    key = machine_key(device)
    cal = None if recalibrate else load_cached(path, key)
    measured = False
    if cal is None:
        if log:
            log(
                f"calibrating {key['device_name']} ({key['threads']} threads, torch {key['torch']}): a few seconds, once per machine"
            )
        cal, measured = calibrate(device), True
    missing = [p for p in precisions if p not in cal.dense_flops_s]
    if missing:
        if log:
            log(f"calibrating {', '.join(missing)} on {key['device_name']}")
        cal, measured = add_precisions(cal, device, missing), True
    if measured:
        save_cached(path, cal)
    return cal, measured


def _depthwise(device: torch.device) -> nn.Module:
    return nn.Sequential(*[nn.Conv2d(96, 96, 3, padding=1, groups=96, bias=False) for _ in range(6)]).to(device)


def compute_ratio(t_precision: float, t_fp32: float, fixed: float) -> float:
    """How much slower a precision computes than fp32: (t_precision - fixed) / (t_fp32 - fixed), the per-call
    cost `fixed` (the same in every precision) taken out of both times.

    `fixed` is itself fitted on a noisy machine and can come out at or above a small network's whole time;
    subtracting all of it then divides by nothing (a fresh clone here once got a 10^7 x slowdown for bf16 and
    planned 35,000 hours for a 10-minute suite). So at most half of the shorter time is taken out: the
    ratio stays between the raw ratio of times and twice it (or half it), never degenerate."""
    if t_precision <= 0 or t_fp32 <= 0:
        raise ValueError("times must be positive")
    taken = min(max(fixed, 0.0), 0.5 * min(t_precision, t_fp32))
    return (t_precision - taken) / (t_fp32 - taken)


def add_precisions(cal: Calibration, device: torch.device, precisions: list[str]) -> Calibration:
    """`cal` with the rates of more precisions: fp32's, scaled by how much slower (or faster) the compute
    of a resnet18 forward (32 px, batch 1) and of the depthwise stack (batch 1) runs in that precision,
    each timed beside its fp32 twin (small: emulated bf16/fp16 on a CPU run 10-50x slower than fp32).
    Training rates scale by the same ratios (CPU training in them is opt-in)."""
    from dataclasses import replace

    sync = lambda: synchronize(device)  # noqa: E731
    nets = _calibration_nets(device)
    ratios = {}
    for name, shape in (("resnet18", (1, 3, 32, 32)), ("depthwise", (1, 96, 16, 16))):
        net = nets[name][0].eval()
        x = torch.randn(*shape, device=device)
        fixed = count_module(copy.deepcopy(net), shape)["ops"] * cal.op_s
        with torch.inference_mode():
            t32 = _best_time(lambda: (net(x), sync()), repeats=3)
            for p in precisions:
                with autocast(device, p):
                    tp = _best_time(lambda: (net(x), sync()), repeats=2)
                ratios[(name, p)] = compute_ratio(tp, t32, fixed)
    tables: dict[str, dict[str, float]] = {
        name: dict(getattr(cal, name))
        for name in (
            "dense_flops_s",
            "grouped_flops_s",
            "elementwise_flops_s",
            "train_dense_flops_s",
            "train_grouped_flops_s",
            "train_elementwise_flops_s",
        )
    }
    for p in precisions:
        for table, base in tables.items():
            if "fp32" in base:
                base[p] = base["fp32"] / ratios[("depthwise" if "grouped" in table else "resnet18", p)]
    return replace(
        cal,
        dense_flops_s=tables["dense_flops_s"],
        grouped_flops_s=tables["grouped_flops_s"],
        elementwise_flops_s=tables["elementwise_flops_s"],
        train_dense_flops_s=tables["train_dense_flops_s"],
        train_grouped_flops_s=tables["train_grouped_flops_s"],
        train_elementwise_flops_s=tables["train_elementwise_flops_s"],
    )


# (network, resolution or size, batch) timed for the fit: tiny inputs (nearly all per-call cost), the
# sizes quick runs use, a pure depthwise stack (grouped FLOPs alone) and a pure SiLU (elementwise alone),
# so that each kind of work has a row of its own and the fit can tell them apart
INFERENCE_POINTS = (
    ("resnet18", 8, 1),
    ("resnet18", 32, 8),
    ("resnet18", 64, 8),
    ("resnet18", 64, 32),
    ("mobilenet_v2", 8, 1),
    ("mobilenet_v2", 32, 8),
    ("mobilenet_v2", 64, 16),
    ("depthwise", 16, 4),
    ("depthwise", 32, 8),
    ("silu", 32, 64),
    ("silu", 64, 64),
)
TRAIN_POINTS = (
    ("resnet18", 8, 2),
    ("resnet18", 32, 16),
    ("resnet18", 64, 16),
    ("mobilenet_v2", 8, 2),
    ("mobilenet_v2", 32, 16),
    ("mobilenet_v2", 64, 16),
    ("depthwise", 16, 4),
    ("silu", 64, 64),
)


def _calibration_nets(device: torch.device) -> dict[str, tuple[nn.Module, int]]:
    """name -> (module, input channels)."""
    return {
        "resnet18": (build_model("resnet18", num_classes=10).to(device), 3),
        "mobilenet_v2": (build_model("mobilenet_v2", num_classes=10).to(device), 3),
        "depthwise": (_depthwise(device), 96),
        "silu": (nn.Sequential(nn.SiLU()).to(device), 16),
    }


def _time_points(
    nets: dict[str, tuple[nn.Module, int]], points, device: torch.device, *, train: bool
) -> list[tuple[dict[str, Any], int, float]]:
    """(workload counts of one input, batch, median seconds) per point: a forward under inference_mode, or
    a training step without the optimizer (zero_grad, forward, backward; the optimizer is timed apart)."""
    rows = []
    for name, size, batch in points:
        net, channels = nets[name]
        net.train(train)
        x = torch.randn(
            batch, channels, size, size, device=device, requires_grad=train and not any(True for _ in net.parameters())
        )
        if train:

            def call(net=net, x=x) -> None:
                net.zero_grad(set_to_none=False)
                net(x).sum().backward()
                synchronize(device)
        else:

            def call(net=net, x=x) -> None:
                with torch.inference_mode():
                    net(x)
                synchronize(device)

        counts = count_module(copy.deepcopy(net).eval(), (1, channels, size, size))
        rows.append((counts, batch, _best_time(call, repeats=5 if batch <= 2 else 3)))
    return rows


def _fit_rates(rows: list[tuple[dict[str, Any], int, float]], what: str) -> dict[str, float]:
    """Seconds per dense, grouped and elementwise FLOP and per operator call, fitted to the timed points by
    non-negative least squares on *relative* error (each row divided by its time, so a 2 ms call weighs as
    much as a 200 ms one). The cost model's rates are their inverses. Non-negative: a noisy point cannot
    make a rate negative or infinite, which a two-point difference did (2e18 FLOP/s from one busy sample)."""
    import numpy as np
    from scipy.optimize import nnls

    k = TRAIN_FLOPS_PER_FORWARD if what == "training" else 1.0
    a = np.array(
        [
            [k * batch * w["dense_flops"], k * batch * w["grouped_flops"], k * batch * w["elementwise_flops"], w["ops"]]
            for w, batch, _ in rows
        ],
        dtype=float,
    )
    t = np.array([seconds for _, _, seconds in rows], dtype=float)
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls((a / scale) / t[:, None], np.ones_like(t))
    coef = coef / scale
    floor = 1e-15  # seconds per FLOP: a term the fit zeroed costs (almost) nothing, not a division by zero
    return {
        "dense": float(1.0 / max(coef[0], floor)),
        "grouped": float(1.0 / max(coef[1], floor)),
        "elementwise": float(1.0 / max(coef[2], floor)),
        "op_s": float(coef[3]),
    }


def calibrate(device: torch.device) -> Calibration:
    """The fp32 calibration (bf16/fp16: `add_precisions`)."""
    age_at_start = _process_age_s() or 0.0
    key = machine_key(device)
    sync = lambda: synchronize(device)  # noqa: E731

    # -- forward and training-step times of two real networks at several sizes, fitted -------------------------
    nets = _calibration_nets(device)
    infer = _fit_rates(_time_points(nets, INFERENCE_POINTS, device, train=False), "inference")
    train = _fit_rates(_time_points(nets, TRAIN_POINTS, device, train=True), "training")
    dense, grouped, elementwise = {"fp32": infer["dense"]}, {"fp32": infer["grouped"]}, {"fp32": infer["elementwise"]}
    train_dense, train_grouped, train_elementwise = (
        {"fp32": train["dense"]},
        {"fp32": train["grouped"]},
        {"fp32": train["elementwise"]},
    )
    op_s = infer["op_s"]
    train_op_s = max(train["op_s"], op_s)
    net = nets["resnet18"][0]
    tiny = count_model("resnet18", 8, 10)

    # -- the FLOP counter's dispatch-mode overhead, per operator call ----------------------------------------
    net.eval()
    xt = torch.randn(1, 3, 8, 8, device=device)
    t_counted = _best_time(lambda: count_flops(net, xt), repeats=3)
    with torch.inference_mode():
        t_plain = _best_time(lambda: (net(xt), sync()), repeats=5)
    profile_s_per_op = max(t_counted - t_plain, 0.0) / tiny["ops"]

    # -- optimizer, init, copy, save -------------------------------------------------------------------------
    n_params = 4_000_000
    w = nn.Parameter(torch.randn(n_params, device=device))
    w.grad = torch.randn_like(w)
    opt = torch.optim.Adam([w], lr=1e-3, fused=True)

    def adam_step(step: Callable[[], Any] = opt.step) -> None:  # bound now: `opt` is deleted below
        step()
        sync()

    optimizer_s_per_param = _best_time(adam_step, repeats=5) / n_params
    del opt, w, adam_step
    n_r18 = sum(p.numel() for p in net.parameters())
    init_s_per_param = _best_time(lambda: build_model("resnet18", num_classes=10), repeats=2) / n_r18
    state = {"w": torch.randn(n_params)}
    copy_s_per_byte = _best_time(lambda: copy.deepcopy(state), repeats=3) / (n_params * 4)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "w.pt"
        save_s_per_byte = _best_time(
            lambda: atomic_write(target, lambda fh: torch.save(state, fh), binary=True), repeats=2
        ) / (n_params * 4)

        # -- reference matmul, images ---------------------------------------------------------------------
        ref = reference_workload(device)
        reference_s = _best_time(lambda: (ref(), sync()), repeats=5)
        import numpy as np

        rng = np.random.default_rng(0)
        styles = _styles(4, rng)
        paths = [Path(tmp) / f"{i}.jpg" for i in range(16)]
        t0 = time.perf_counter()
        for i, path in enumerate(paths):
            render(styles[i % 4], 64, rng).save(path, quality=90)
        render_s = (time.perf_counter() - t0) / len(paths)
        t0 = time.perf_counter()
        for path in paths:
            decode_file(path, 32)
        decode_s = (time.perf_counter() - t0) / len(paths)

    # -- per run: the isolation server imports torch, torchvision and bench, as this process did -------------
    run_fixed_s = age_at_start

    return Calibration(
        dense_flops_s=dense,
        grouped_flops_s=grouped,
        elementwise_flops_s=elementwise,
        train_dense_flops_s=train_dense,
        train_grouped_flops_s=train_grouped,
        train_elementwise_flops_s=train_elementwise,
        op_s=op_s,
        train_op_s=train_op_s,
        profile_s_per_op=profile_s_per_op,
        optimizer_s_per_param=optimizer_s_per_param,
        init_s_per_param=init_s_per_param,
        copy_s_per_byte=copy_s_per_byte,
        save_s_per_byte=save_s_per_byte,
        reference_s=reference_s,
        render_s_per_image=render_s,
        decode_s_per_image=decode_s,
        build_fixed_s=0.0,
        run_fixed_s=run_fixed_s,
        key=key,
    )


def default_path(results_root: Path = Path("results")) -> Path:
    return Path(os.environ.get("BENCH_CALIBRATION", results_root / ".calibration.json"))
