"""A short measured calibration of this machine for the cost model (bench.cost): a few seconds of
representative workloads, cached per machine in `results/.calibration.json`.

Keyed by device (CPU model or GPU name), torch version and thread count: a different machine, torch or
thread count calibrates again; `bench plan --recalibrate` forces it. What is measured (each the median of a few
calls after a warm-up):

- resnet18 forward at 64 px, batch 8 and at 8 px, batch 1 (bf16/fp16, only when a plan has cells in
  them: at 32 px, batch 1, emulated on most CPUs and 10-50x slower): two points give the dense FLOP/s and the fixed cost per operator
  call (the tiny input is nearly all per-call cost), after the elementwise part is taken off;
- resnet18 forward + backward at 32 px, batch 8 and at 8 px, batch 2: the training FLOP/s of dense work
  and the per-call cost of a training step (autograd's bookkeeping makes it several times the inference one);
- a stack of depthwise 3x3 convolutions (96 channels, 16 px, batch 4), forward and forward + backward:
  grouped-conv FLOP/s (a depthwise conv runs at a fraction of a dense one's rate);
- SiLU over 2M elements: elementwise FLOP/s;
- a fused Adam step over 4M parameters; building resnet18 (random init); copying and saving 16 MB of
  weights; the speed measurement's reference matmul; rendering and decoding synthetic images; and
  starting a Python that imports torch and bench (the isolation server, once per run).
"""

from __future__ import annotations

import copy
import json
import statistics
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.cost import TRAIN_FLOPS_PER_FORWARD, Calibration

CALIBRATION_VERSION = 2


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
    from bench.env import _cpu_model

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    return {"version": CALIBRATION_VERSION, "device": device.type, "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


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
    from bench.store import atomic_write_text

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


def get_calibration(device: torch.device, path: Path, *, precisions: tuple[str, ...] = ("fp32",), recalibrate: bool = False,
                    log: Callable[[str], None] | None = None) -> tuple[Calibration, bool]:
    """(calibration, whether anything was measured now): the cached one for this machine, completed with
    any precision it lacks (bf16/fp16 are measured only when a plan has cells in them), or a fresh one."""
    key = machine_key(device)
    cal = None if recalibrate else load_cached(path, key)
    measured = False
    if cal is None:
        if log:
            log(f"calibrating {key['device_name']} ({key['threads']} threads, torch {key['torch']}): a few seconds, once per machine")
        cal, measured = calibrate(device), True
    missing = [p for p in precisions if p not in cal.dense_flops_s]
    if missing:
        if log:
            log(f"calibrating {', '.join(missing)} on {key['device_name']}")
        cal, measured = add_precisions(cal, device, missing), True
    if measured:
        save_cached(path, cal)
    return cal, measured


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _elementwise_rate(device: torch.device, precision: str, n: int = 2_000_000) -> float:
    x = torch.randn(n, device=device).to(_DTYPES[precision])
    return n / _best_time(lambda: (torch.nn.functional.silu(x), _sync(device)))


def _depthwise(device: torch.device) -> nn.Module:
    return nn.Sequential(*[nn.Conv2d(96, 96, 3, padding=1, groups=96, bias=False) for _ in range(6)]).to(device)


def add_precisions(cal: Calibration, device: torch.device, precisions: list[str]) -> Calibration:
    """`cal` with the inference rates of more precisions measured (resnet18 forward at 32 px, batch 1, and
    the depthwise stack at batch 1, both small: emulated bf16/fp16 on a CPU run 10-50x slower than fp32).
    Their training rates (not measured: CPU training in them is opt-in) are fp32's scaled by the forward ratio."""
    from dataclasses import replace

    from bench.device import autocast
    from bench.models import build_model
    from bench.workload import count_model

    sync = lambda: _sync(device)  # noqa: E731
    net = build_model("resnet18", num_classes=10).to(device).eval()
    work = count_model("resnet18", 32, 10)
    dw = _depthwise(device)
    xd = torch.randn(1, 96, 16, 16, device=device)
    dw_flops = 6 * 2 * xd.numel() * 9
    x = torch.randn(1, 3, 32, 32, device=device)
    tables = {name: dict(getattr(cal, name)) for name in ("dense_flops_s", "grouped_flops_s", "elementwise_flops_s",
                                                          "train_dense_flops_s", "train_grouped_flops_s")}
    for p in precisions:
        elementwise = _elementwise_rate(device, p)
        with torch.inference_mode(), autocast(device, p):
            t = _best_time(lambda: (net(x), sync()), repeats=2)
            t_dw = _best_time(lambda: (dw(xd), sync()), repeats=2)
        compute = t - work["ops"] * cal.op_s - work["elementwise_flops"] / elementwise
        tables["elementwise_flops_s"][p] = elementwise
        tables["dense_flops_s"][p] = work["dense_flops"] / max(compute, 1e-9)
        tables["grouped_flops_s"][p] = dw_flops / max(t_dw - 6 * cal.op_s, 1e-9)
        tables["train_dense_flops_s"][p] = cal.train_dense_flops_s["fp32"] * tables["dense_flops_s"][p] / cal.dense_flops_s["fp32"]
        tables["train_grouped_flops_s"][p] = cal.train_grouped_flops_s["fp32"] * tables["grouped_flops_s"][p] / cal.grouped_flops_s["fp32"]
    return replace(cal, **tables)


def calibrate(device: torch.device) -> Calibration:
    """The fp32 calibration (bf16/fp16: `add_precisions`)."""
    from bench.models import build_model
    from bench.workload import count_model

    age_at_start = _process_age_s() or 0.0
    key = machine_key(device)
    sync = lambda: _sync(device)  # noqa: E731

    elementwise = {"fp32": _elementwise_rate(device, "fp32")}

    # -- dense conv net: resnet18 at 64 px batch 8 and at 8 px batch 1 --------------------------------------
    net = build_model("resnet18", num_classes=10).to(device).eval()
    big, tiny = count_model("resnet18", 64, 10), count_model("resnet18", 8, 10)
    xb = torch.randn(8, 3, 64, 64, device=device)
    xt = torch.randn(1, 3, 8, 8, device=device)
    with torch.inference_mode():
        t_big = _best_time(lambda: (net(xb), sync()), repeats=5)
        t_tiny = _best_time(lambda: (net(xt), sync()), repeats=10)
    elem_big = 8 * big["elementwise_flops"] / elementwise["fp32"]
    elem_tiny = tiny["elementwise_flops"] / elementwise["fp32"]
    a_big, a_tiny = 8 * big["dense_flops"], tiny["dense_flops"]
    # t = a / R + ops x c at two sizes (the same operator calls: their number does not depend on the input size)
    rate = (a_big - a_tiny) / max((t_big - elem_big) - (t_tiny - elem_tiny), 1e-9)
    dense = {"fp32": rate}
    op_s = max((t_tiny - elem_tiny - a_tiny / rate) / tiny["ops"], 0.0)

    # training: forward + backward of resnet18 at 32 px, batch 8 and at 8 px, batch 1 (no optimizer: timed
    # apart): the training FLOP/s and the per-call cost of a training step, per forward operator call
    # (autograd records every call and the backward makes about three more)
    net.train()
    xs, xt2 = torch.randn(8, 3, 32, 32, device=device), torch.randn(2, 3, 8, 8, device=device)
    work_s, work_t = count_model("resnet18", 32, 10), tiny

    def step(x: torch.Tensor) -> None:
        net.zero_grad(set_to_none=False)
        net(x).sum().backward()
        sync()

    t_s = _best_time(lambda: step(xs), repeats=3)
    t_t = _best_time(lambda: step(xt2), repeats=5)
    k = TRAIN_FLOPS_PER_FORWARD
    e_s, e_t = k * 8 * work_s["elementwise_flops"] / elementwise["fp32"], k * 2 * work_t["elementwise_flops"] / elementwise["fp32"]
    a_s, a_t = k * 8 * work_s["dense_flops"], k * 2 * work_t["dense_flops"]
    train_rate = (a_s - a_t) / max((t_s - e_s) - (t_t - e_t), 1e-9)
    train_dense = {"fp32": train_rate}
    train_op_s = max((t_t - e_t - a_t / train_rate) / tiny["ops"], op_s)

    # -- grouped (depthwise) convolutions -------------------------------------------------------------------
    dw = _depthwise(device)
    xd = torch.randn(4, 96, 16, 16, device=device)
    dw_flops = 6 * 2 * xd.numel() * 9  # per batch
    with torch.inference_mode():
        t = _best_time(lambda: (dw(xd), sync()), repeats=5)
    grouped = {"fp32": dw_flops / max(t - 6 * op_s, 1e-9)}

    def dw_step() -> None:
        dw.zero_grad(set_to_none=False)
        dw(xd).sum().backward()
        sync()

    t = _best_time(dw_step, repeats=3)
    train_grouped = {"fp32": TRAIN_FLOPS_PER_FORWARD * dw_flops / max(t - 6 * train_op_s, 1e-9)}

    # -- the FLOP counter's dispatch-mode overhead, per operator call ----------------------------------------
    from bench.flops import count_flops

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
    optimizer_s_per_param = _best_time(lambda: (opt.step(), sync()), repeats=5) / n_params
    del opt, w
    n_r18 = sum(p.numel() for p in net.parameters())
    init_s_per_param = _best_time(lambda: build_model("resnet18", num_classes=10), repeats=2) / n_r18
    state = {"w": torch.randn(n_params)}
    copy_s_per_byte = _best_time(lambda: copy.deepcopy(state), repeats=3) / (n_params * 4)
    with tempfile.TemporaryDirectory() as tmp:
        from bench.store import atomic_write

        target = Path(tmp) / "w.pt"
        save_s_per_byte = _best_time(lambda: atomic_write(target, lambda fh: torch.save(state, fh), binary=True), repeats=2) / (n_params * 4)

        # -- reference matmul, images ---------------------------------------------------------------------
        from bench.timing import reference_workload

        ref = reference_workload(device)
        reference_s = _best_time(lambda: (ref(), sync()), repeats=5)
        import numpy as np

        from bench.data.images import decode_file
        from bench.data.synthetic import _styles, render

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
        dense_flops_s=dense, grouped_flops_s=grouped, elementwise_flops_s=elementwise,
        train_dense_flops_s=train_dense, train_grouped_flops_s=train_grouped,
        op_s=op_s, train_op_s=train_op_s, profile_s_per_op=profile_s_per_op, optimizer_s_per_param=optimizer_s_per_param,
        init_s_per_param=init_s_per_param, copy_s_per_byte=copy_s_per_byte, save_s_per_byte=save_s_per_byte,
        reference_s=reference_s, render_s_per_image=render_s, decode_s_per_image=decode_s,
        build_fixed_s=0.0, run_fixed_s=run_fixed_s, key=key,
    )


def default_path(results_root: Path = Path("results")) -> Path:
    return Path(os.environ.get("BENCH_CALIBRATION", results_root / ".calibration.json"))
