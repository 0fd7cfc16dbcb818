"""Measurement fidelity (issue 9): FLOP coverage and elementwise work, training FLOPs, warm-up until stable,
what actually ran recorded and shown, opt-in OOM fallback, process isolation, machine state.

Exact numbers on hand-made inputs where possible; FLOPs cross-checked against torch's FlopCounterMode (and
fvcore in test_fvcore_crosscheck.py)."""

from __future__ import annotations

import json
import math
import textwrap

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import bench.execution.cell as runner_mod
from bench.cli import app
from bench.core.result import CellResult
from bench.execution.sweep import run_cells
from bench.measure.base import CellContext
from bench.measure.flops import count_flops, count_train_flops
from bench.measure.profile import Profile, coverage
from bench.measure.timing import settled, time_loop
from bench.models import get_entry
from bench.models.builders import build_model
from bench.platform.machine import gpu_state
from bench.platform.machine import warnings as machine_warnings
from bench.report import render_report
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite

# -- FLOP coverage --------------------------------------------------------------------------------------


@torch.library.custom_op("bench_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    """An operator no FLOP counter knows (a custom op: bench, torch and fvcore have no formula for it)."""
    return x * 2 + 1


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class Mystery(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return mystery(self.fc(x))


def test_unknown_operator_is_reported_not_silently_dropped():
    count = count_flops(Mystery(), torch.randn(1, 4))
    assert count.macs == 12 and count.flops == 24  # 4 x 3 weights, one image
    assert count.uncounted == {"mystery": {"calls": 1, "output_elements": 3}}
    assert count.elementwise_flops == 0
    assert count.uncounted_flops_estimate == 3  # one FLOP per output element
    assert count.uncounted_share == pytest.approx(3 / 27)
    cov = coverage(count, threshold=0.01)
    assert cov["uncounted_ops"] == ["mystery"] and cov["flops_coverage_flag"] is True
    assert coverage(count, threshold=0.5)["flops_coverage_flag"] is False


class Mystery4D(nn.Module):
    """The unknown op on an image model: conv (counted), then mystery."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, bias=False)

    def forward(self, x):
        return mystery(self.conv(x))


def test_unknown_operator_flagged_in_results_csv_and_report(tmp_path, suite_file):
    """Through the profile measurement, the store, results.csv and the report."""
    suite = load_suite(
        suite_file("name: mystery\nmodels: [resnet18]\nmatrix: {resolution: [32]}\nmeasure: [profile]\n")
    )
    (cell,) = expand(suite)
    ctx = CellContext(cell=cell, model=Mystery4D(), device=torch.device("cpu"), entry=get_entry("resnet18"))
    data = Profile({}).measure(ctx)
    # conv 3->2 3x3 on 32x32: 2 x 30 x 30 = 1800 outputs x 27 = 48,600 MACs; the unknown op: 1800 elements
    assert data["macs"] == 48_600 and data["uncounted"] == {"mystery": {"calls": 1, "output_elements": 1800}}
    assert data["uncounted_share"] == pytest.approx(1800 / (97_200 + 1800))  # 1.8% > the default 1%
    assert data["uncounted_ops"] == ["mystery"] and data["flops_coverage_flag"] is True
    store = RunStore.create(tmp_path / "results" / "mystery" / "run")
    store.write_cell(CellResult(cell=cell, status="ok", measurements={"profile": {"status": "ok", **data}}))
    store.write_csv(store.read_cells())
    row = pd.read_csv(store.run_dir / "results.csv").iloc[0]
    assert row["profile.uncounted_ops"] == "mystery" and bool(row["profile.flops_coverage_flag"]) is True
    assert row["profile.uncounted_share"] == pytest.approx(data["uncounted_share"])
    md = render_report([store.run_dir], tmp_path / "out", formats=["md"])["md"].read_text()
    assert "## FLOP coverage" in md and "FLOP count incomplete" in md
    assert "mystery (1 calls," in md and "flagged" in md


def test_elementwise_ops_counted_apart_with_exact_costs():
    """conv 1->2 3x3 on 5x5: 18 outputs x 9 = 162 MACs. BN (eval, affine) 2/element, ReLU 1, adaptive
    average pool 1 per input element, softmax 3 per element: 36 + 18 + 18 + 6 = 78, not in the headline."""
    m = nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Softmax(dim=1),
    ).eval()
    count = count_flops(m, torch.randn(1, 1, 5, 5))
    assert count.macs == 162
    assert count.elementwise_by_op == {
        "_native_batch_norm_legit_no_training": 36,
        "relu": 18,
        "mean": 18,
        "_softmax": 6,
    }
    assert count.uncounted == {}
    assert count.elementwise_share == pytest.approx(78 / (324 + 78))


def test_softmax_inside_fused_attention_counts_as_a_plain_softmax():
    """F.scaled_dot_product_attention and nn.MultiheadAttention's fused path hide their softmax from the op
    stream; bench adds it back: 3 FLOPs per score, exactly what the unfused softmax is counted."""
    import torch.nn.functional as F

    q = torch.randn(1, 2, 5, 4)
    fused = count_flops(_Lambda(lambda t: F.scaled_dot_product_attention(t, t, t)), q)
    plain = count_flops(_Lambda(lambda t: torch.softmax(t @ t.transpose(-1, -2), -1) @ t), q)
    assert fused.flops == plain.flops == 800
    assert fused.elementwise_flops == plain.elementwise_flops == 3 * 2 * 5 * 5
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    count = count_flops(_Lambda(lambda t: mha(t, t, t, need_weights=False)[0]), torch.randn(1, 5, 8))
    assert count.elementwise_by_op == {"_native_multi_head_attention.softmax": 3 * 2 * 5 * 5}


class _Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


PROFILED = textwrap.dedent(
    """
    name: coverage
    models: [efficientnet_b0, vit_base_patch16_224, resnet18]
    matrix: {resolution: [native]}
    measure: [profile]
    """
)


def test_report_lists_uncounted_ops_or_none_and_elementwise_share(suite_file, tmp_path):
    """efficientnet_b0 and resnet18 (torchvision) and vit_base_patch16_224 (timm), at their native 224."""
    suite = load_suite(suite_file(PROFILED))
    store = RunStore.create(tmp_path / "results" / "coverage" / "run")
    store.write_json("suite.resolved.json", suite.resolved_dict())
    summary = run_cells(expand(suite), store, torch.device("cpu"))
    assert [r.status for r in summary.results] == ["ok", "ok", "ok"]
    prof = {r.cell.model: r.measurements["profile"] for r in summary.results}
    for name, p in prof.items():
        assert p["uncounted_ops"] == [] and p["uncounted_share"] == 0 and p["flops_coverage_flag"] is False, name
        assert 0 < p["elementwise_share"] < 0.1, name
        # the headline is unchanged by the elementwise count: published MACs
    assert prof["resnet18"]["gmacs"] == pytest.approx(1.814, abs=1e-3)  # torchvision's 1.81 GFLOPS
    assert prof["vit_base_patch16_224"]["gmacs"] == pytest.approx(17.564, abs=1e-3)
    assert set(prof["vit_base_patch16_224"]["elementwise_by_op"]) == {
        "add",
        "gelu",
        "native_layer_norm",
        "_scaled_dot_product_flash_attention_for_cpu.softmax",
    }
    assert (
        prof["vit_base_patch16_224"]["elementwise_by_op"]["_scaled_dot_product_flash_attention_for_cpu.softmax"]
        == 3 * 12 * 12 * 197 * 197
    )  # layers x heads x 197^2 scores, 3 FLOPs each
    assert {"silu_", "sigmoid", "mul"} <= set(prof["efficientnet_b0"]["elementwise_by_op"])
    df = pd.read_csv(store.run_dir / "results.csv")
    assert list(df["profile.flops_coverage_flag"]) == [False, False, False]
    paths = render_report([store.run_dir], tmp_path / "out")
    md = paths["md"].read_text()
    section = md.split("## FLOP coverage")[1].split("\n## ")[0]
    for r in summary.results:
        line = next(line for line in section.splitlines() if line.startswith(f"| {r.cell.model}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4] == "none"  # uncounted ops
        assert cells[3] == f"{r.measurements['profile']['elementwise_share'] * 100:.2f}%"
        assert cells[5] == "0.00%"
    assert "FLOP count incomplete" not in md
    assert "FLOP coverage" in paths["html"].read_text()


# -- training FLOPs -------------------------------------------------------------------------------------


def test_resnet18_training_flops_about_three_times_forward():
    """Backward = grad w.r.t. inputs + grad w.r.t. weights, each the forward's MACs, except the first conv,
    whose input needs no gradient: train = 3 x forward - conv1. Tolerance: the ratio within [2.9, 3.0]."""
    model = build_model("resnet18")
    x = torch.randn(1, 3, 224, 224)
    fwd = count_flops(model, x)
    train = count_train_flops(model, x)
    conv1 = 2 * 64 * 3 * 7 * 7 * 112 * 112  # FLOPs of conv1 at 224 px
    assert train.flops == 3 * fwd.flops - conv1
    ratio = train.flops / fwd.flops
    assert 2.9 <= ratio <= 3.0, ratio  # 2.935
    # independent count: torch's own FlopCounterMode over a plain forward + backward agrees exactly
    plain = FlopCounterMode(display=False)
    with plain:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    assert plain.get_total_flops() == train.flops
    assert all(p.grad is None for p in model.parameters())  # the count left no gradients behind


def test_grouped_conv_backward_is_counted_right():
    """torch's formula ignores groups; a depthwise 3x3 conv, 8 channels on 4x4 (padding 1): forward
    2 x 16 x 9 x 8 = 2304 FLOPs; grad_input and grad_weight each the same, 4608 (torch says 20736)."""
    conv = nn.Conv2d(8, 8, 3, groups=8, padding=1, bias=False)
    x = torch.randn(1, 8, 4, 4, requires_grad=True)
    count = count_flops(conv, x, backward=True)
    assert count.by_op == {"convolution": 2304, "convolution_backward": 4608}
    plain = FlopCounterMode(display=False)
    with plain:
        conv(x).sum().backward()
    assert plain.get_flop_counts()["Global"][torch.ops.aten.convolution_backward] == 20736
    ratio = (
        count_train_flops(build_model("mobilenet_v2"), torch.randn(1, 3, 64, 64)).flops
        / count_flops(build_model("mobilenet_v2"), torch.randn(1, 3, 64, 64)).flops
    )
    assert 2.9 <= ratio <= 3.0, ratio


def test_profile_records_training_flops_when_the_cell_trains_or_asked(suite_file):
    text = "name: t\nmodels: [resnet18]\nmatrix: {resolution: [32]}\nmeasure: [profile]\n"
    (cell,) = expand(load_suite(suite_file(text)))
    model = build_model("resnet18")
    ctx = CellContext(cell=cell, model=model, device=torch.device("cpu"), entry=get_entry("resnet18"))
    assert "train_flops_per_image" not in Profile({}).measure(ctx)  # auto: the cell does not train
    data = Profile({"train_flops": True}).measure(ctx)
    assert data["train_flops_per_image"] == 3 * data["flops"] - 2 * 64 * 3 * 49 * 16 * 16
    assert data["train_to_forward"] == pytest.approx(data["train_flops_per_image"] / data["flops"])


# -- cell ids: new settings at their defaults change no id -------------------------------------------------


def test_committed_nightly_baseline_keeps_its_cell_ids():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    planned = [c.id for c in expand(load_suite(root / "suites" / "nightly.yaml"))]
    baseline = json.loads((root / "results" / "baselines" / "nightly" / "plan.json").read_text())["cell_ids"]
    assert planned == baseline


def test_new_settings_change_the_id_only_when_set(suite_file):
    base = "name: s\nmodels: [resnet18]\nmatrix: {resolution: [32]}\n"
    (plain,) = expand(load_suite(suite_file(base)))
    (defaults,) = expand(
        load_suite(suite_file(base + "settings: {speed: {oom_fallback: false, warmup_max_iters: 30}}\n", "b.yaml"))
    )
    (changed,) = expand(load_suite(suite_file(base + "settings: {speed: {oom_fallback: true}}\n", "c.yaml")))
    assert plain.id == defaults.id != changed.id
    assert "oom_fallback" not in plain.settings["speed"] and changed.settings["speed"]["oom_fallback"] is True


# -- warm-up until stable ------------------------------------------------------------------------------------


def test_settled_rule_exact():
    assert settled([5.0, 3.0, 2.0, 2.05, 1.98], window=3, tolerance=0.05)  # 2.05 and 1.98 within 5% of 2.0
    assert not settled([5.0, 3.0, 2.0, 2.05], window=3, tolerance=0.05)  # 3.0 is 46% above the median 2.05
    assert not settled([2.0, 2.0], window=3, tolerance=0.05)  # fewer than the window
    assert settled([2.0, 2.2, 2.1], window=3, tolerance=0.05)  # 2.0 and 2.2 are 4.8% from 2.1


class FakeClock:
    """A clock that moves only when the timed function runs: exact, machine-independent timings."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, list(durations)

    def __call__(self):
        return self.now

    def call(self):
        self.now += self.durations.pop(0) if self.durations else 2.0

    def timed(self, fn=None, **settings):
        """time_loop on the CPU read by this clock, no minimum time: of `fn`, by default of the clock's own call."""
        return time_loop(fn or self.call, device=torch.device("cpu"), min_time_s=0.0, clock=self, **settings)


def test_warmup_runs_until_timings_settle_and_counts_what_it_discarded():
    clock = FakeClock([5.0, 3.0, 2.0, 2.05, 1.98])
    r = clock.timed(warmup_iters=1, warmup_max_iters=30, warmup_window=3, warmup_tolerance=0.05, min_repeats=4)
    assert r.warmup_iters == 5 and r.warmup_settled is True
    assert r.warmup_samples == pytest.approx((5.0, 3.0, 2.0, 2.05, 1.98))
    assert r.samples == (2.0, 2.0, 2.0, 2.0) and r.method == "perf_counter"
    noisy = FakeClock([1.0, 2.0] * 50)  # never settles: stops at the maximum, and says so
    r = noisy.timed(warmup_iters=2, warmup_max_iters=12, min_repeats=1)
    assert r.warmup_iters == 12 and r.warmup_settled is False
    fixed = FakeClock([9.0] * 10)  # no warmup_max_iters: the old fixed count
    r = fixed.timed(warmup_iters=4, min_repeats=1)
    assert r.warmup_iters == 4 and r.warmup_settled is None


def test_counter_is_read_around_the_timed_calls_only():
    calls = {"n": 0}

    def fn():
        calls["n"] += 1

    clock = FakeClock([1.0] * 20)
    r = clock.timed(fn, warmup_iters=3, min_repeats=4, counter=lambda: calls["n"] * 100)
    assert r.warmup_iters == 3 and len(r.samples) == 4
    assert r.counted == 400  # the 4 timed calls' increase, not the warm-up's
    assert time_loop(fn, device=torch.device("cpu"), warmup_iters=0, min_repeats=1, min_time_s=0.0).counted is None


# -- what actually ran: results.csv and the report --------------------------------------------------------


def test_actual_batch_warmup_and_timing_method_in_results_csv_and_report(suite_file, tmp_path):
    text = textwrap.dedent(
        """
        name: recorded
        models: [resnet18]
        matrix: {resolution: [32], batch_size: [3], channels_last: [true]}
        measure: [speed]
        settings: {speed: {warmup_iters: 2, min_repeats: 3, min_time_s: 0.0}}
        """
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(suite_file(text)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cell = json.loads(next((out / "cells").glob("*.json")).read_text())
    speed = cell["measurements"]["speed"]
    assert cell["isolation"] == "process"  # auto: a speed cell runs in its own process
    assert speed["batch_size"] == speed["requested_batch_size"] == 3 and speed["fallback"] is None
    assert speed["warmup_iters"] >= 2 and speed["warmup_iters"] == len(speed["warmup_samples_s"]) + 1
    assert speed["timing_method"] == "perf_counter" and speed["memory_format"] == "channels_last"
    assert speed["page_faults_per_call"] >= 0  # counted on a CPU
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["speed.batch_size"] == 3 and row["speed.warmup_iters"] == speed["warmup_iters"]
    assert row["speed.timing_method"] == "perf_counter" and row["isolation"] == "process"
    md = (out / "report.md").read_text()
    section = md.split("## How each cell was measured")[1].split("\n## ")[0]
    line = next(line for line in section.splitlines() if line.startswith("| resnet18@32"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "3" and cells[4] == "channels_last" and cells[6] == "perf_counter"
    assert cells[5].split()[0] == str(speed["warmup_iters"]) and cells[8] == "process"
    html = (out / "report.html").read_text()
    assert "How each cell was measured" in html and "perf_counter" in html


def _oom_above(limit, monkeypatch):
    real_build = runner_mod.build_model

    def build_model(name, **kwargs):
        model = real_build(name, **kwargs)
        real_forward = model.forward

        def forward(x):
            if x.shape[0] > limit:
                raise RuntimeError(f"DefaultCPUAllocator: not enough memory: batch {x.shape[0]} (out of memory)")
            return real_forward(x)

        model.forward = forward
        return model

    monkeypatch.setattr(runner_mod, "build_model", build_model)


def test_oom_fallback_is_opt_in_recorded_and_shown(suite_file, tmp_path, monkeypatch):
    _oom_above(2, monkeypatch)
    base = "name: fb\nmodels: [resnet18]\nmatrix: {resolution: [32], batch_size: [8]}\nmeasure: [speed]\n"
    fast = "{warmup_iters: 1, warmup_max_iters: 3, min_repeats: 2, min_time_s: 0.0"
    # off by default: the cell fails, nothing is changed silently
    cells = expand(load_suite(suite_file(base + f"settings: {{speed: {fast}}}}}\n")))
    (failed,) = run_cells(cells, RunStore.create(tmp_path / "a"), torch.device("cpu"), isolation="none").results
    assert failed.status == "failed" and "out of memory" in failed.reason
    # opted in: batch 8 -> 4 -> 2, recorded
    store = RunStore.create(tmp_path / "results" / "fb" / "run")
    cells = expand(load_suite(suite_file(base + f"settings: {{speed: {fast}, oom_fallback: true}}}}\n", "b.yaml")))
    (ok,) = run_cells(cells, store, torch.device("cpu"), isolation="none").results
    speed = ok.measurements["speed"]
    assert ok.status == "ok" and speed["batch_size"] == 2 and speed["requested_batch_size"] == 8
    assert (
        speed["fallback"].startswith("batch 8 -> 4 after out of memory") and "; batch 4 -> 2 after" in speed["fallback"]
    )
    assert speed["throughput_img_s"] == pytest.approx(2 / (speed["latency_median_ms"] / 1e3))
    row = pd.read_csv(store.run_dir / "results.csv").iloc[0]
    assert (
        row["speed.batch_size"] == 2
        and row["speed.requested_batch_size"] == 8
        and row["speed.fallback"] == speed["fallback"]
    )
    md = render_report([store.run_dir], tmp_path / "out", formats=["md"])["md"].read_text()
    assert "Changed from the requested config" in md and "batch 8 → 2" in md and "2 (asked 8)" in md


# -- process isolation ------------------------------------------------------------------------------------

ISOLATED = textwrap.dedent(
    """
    name: isolated
    models:
      - {name: resnet18, settings: {fault: {mode: exit}}}
      - {name: resnet18, settings: {fault: {mode: memory}}}
      - {name: resnet18, settings: {fault: {mode: kill}}}
      - {name: mobilenet_v2, settings: {fault: {mode: ok}}}
    matrix: {resolution: [32], seed: [7]}
    measure: [profile, fault]
    memory_limit_mb: 512
    """
)


def test_process_isolation_a_crash_or_exhausted_memory_fails_alone(suite_file, tmp_path):
    import os

    import fault_measure  # noqa: F401  - registers the `fault` measurement (the children import it too)

    suite = load_suite(suite_file(ISOLATED))
    cells = expand(suite)
    store = RunStore.create(tmp_path / "sweep")
    summary = run_cells(cells, store, torch.device("cpu"), isolation="process", memory_limit_mb=suite.memory_limit_mb)
    exited, exhausted, killed, nxt = summary.results
    assert exited.status == "failed" and exited.reason == "child process exited with code 3 before recording a result"
    assert exhausted.status == "failed" and exhausted.reason.startswith("fault: out of memory (")
    assert exhausted.measurements["profile"]["status"] == "ok"  # the child's own result, recorded as usual
    assert killed.status == "failed" and killed.reason.startswith("child process killed by SIGKILL")
    assert nxt.status == "ok" and all(r.isolation == "process" for r in summary.results)
    assert nxt.measurements["fault"]["pid"] != os.getpid()
    df = pd.read_csv(store.run_dir / "results.csv")
    assert list(df["status"]) == ["failed", "failed", "failed", "ok"] and list(df["id"]) == [c.id for c in cells]
    assert not list(store.run_dir.rglob("*.tmp"))

    # the next cell's result equals its result when run on its own, in a fresh process and in this one
    alone = run_cells(cells[3:], RunStore.create(tmp_path / "alone"), torch.device("cpu"), isolation="process").results[
        0
    ]
    inproc = run_cells(cells[3:], RunStore.create(tmp_path / "inproc"), torch.device("cpu"), isolation="none").results[
        0
    ]
    for other in (alone, inproc):
        assert other.measurements["fault"]["checksum"] == nxt.measurements["fault"]["checksum"]
        assert other.measurements["fault"]["first"] == nxt.measurements["fault"]["first"]
        assert other.measurements["profile"] == nxt.measurements["profile"]
    assert inproc.isolation == "none" and inproc.measurements["fault"]["pid"] == os.getpid()


def test_unknown_isolation_mode_is_refused(tmp_path, suite_file):
    cells = expand(
        load_suite(suite_file("name: x\nmodels: [resnet18]\nmatrix: {resolution: [32]}\nmeasure: [profile]\n"))
    )
    with pytest.raises(ValueError, match="unknown isolation mode"):
        run_cells(cells, RunStore.create(tmp_path / "r"), torch.device("cpu"), isolation="threads")
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(suite_file("name: x\nmodels: [resnet18]\nmeasure: [profile]\n", "y.yaml")),
            "--out",
            str(tmp_path / "c"),
            "--isolation",
            "threads",
        ],
    )
    assert result.exit_code == 2 and "unknown isolation mode 'threads'" in result.output


# -- machine state --------------------------------------------------------------------------------------------


def test_machine_warnings_exact():
    calm = {"load_average": [0.4, 0.3, 0.2], "cores_usable": 2, "cpu_governor": "performance"}
    assert machine_warnings(calm, "cpu") == []
    busy = {"load_average": [3.14, 2.0, 1.0], "cores_usable": 2, "cpu_governor": "powersave"}
    assert machine_warnings(busy, "cpu") == [
        "the machine was busy at the start: load average 3.14 on 2 usable cores (another job was running); timings may be slow and noisy",
        "CPU frequency governor is 'powersave', not 'performance': the clock follows the load, so timings drift",
    ]
    gpu = {
        **calm,
        "gpu": {
            "nvml": "ok",
            "clocks_locked": False,
            "auto_boost": True,
            "throttle_reasons": ["gpu_idle", "sw_power_cap"],
        },
    }
    assert machine_warnings(gpu, "cuda") == [
        "GPU clocks are not locked (auto boost on): clocks drift with temperature and power between runs (nvidia-smi -lgc locks them)",
        "GPU clocks were being held down at the start: sw_power_cap",
    ]
    assert machine_warnings({**calm, "gpu": {"nvml": "unavailable (pip install nvidia-ml-py)"}}, "cuda") == [
        "GPU clocks, power and throttling not recorded: NVML unavailable (pip install nvidia-ml-py)"
    ]


class FakeNVML:
    """The few NVML calls bench makes, answering like a GPU with locked clocks under a power cap."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0

    def __init__(self):
        self.shut = False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"gpu{i}"

    def nvmlDeviceGetClockInfo(self, h, kind):
        return (1410, 1593)[kind]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return (1980, 1593)[kind]

    def nvmlDeviceGetApplicationsClock(self, h, kind):
        return 1410

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 400_000

    def nvmlDeviceGetPowerUsage(self, h):
        return 250_500

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 61

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x2 | 0x4

    def nvmlDeviceGetAutoBoostedClocksEnabled(self, h):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")


def test_gpu_state_decoded_from_nvml():
    nvml = FakeNVML()
    state = gpu_state(0, nvml=nvml)
    assert state == {
        "nvml": "ok",
        "sm_clock_mhz": 1410,
        "sm_clock_max_mhz": 1980,
        "mem_clock_mhz": 1593,
        "mem_clock_max_mhz": 1593,
        "applications_sm_clock_mhz": 1410,
        "power_limit_w": 400.0,
        "power_draw_w": 250.5,
        "temperature_c": 61,
        "throttle_reasons": ["applications_clocks_setting", "sw_power_cap"],
        "auto_boost": None,
        "clocks_locked": True,
    }
    assert nvml.shut
    assert machine_warnings({"gpu": state}, "cuda") == ["GPU clocks were being held down at the start: sw_power_cap"]


def test_env_records_the_environment_variables_that_change_speed(monkeypatch):
    from bench.platform.env import capture_env, perf_env_vars

    assert perf_env_vars(
        {
            "MALLOC_MMAP_THRESHOLD_": "33554432",
            "OMP_NUM_THREADS": "1",
            "HOME": "/root",
            "LD_PRELOAD": "libjemalloc.so",
            "PATH": "/bin",
        }
    ) == {"LD_PRELOAD": "libjemalloc.so", "MALLOC_MMAP_THRESHOLD_": "33554432", "OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4294967296")
    env = capture_env(torch.device("cpu"))
    assert env["env_vars"]["MALLOC_TRIM_THRESHOLD_"] == "4294967296" and "HOME" not in env["env_vars"]


def test_env_records_machine_state_and_the_report_warns(suite_file, tmp_path):
    from bench.platform.env import capture_env

    env = capture_env(torch.device("cpu"))
    assert set(env["machine"]) >= {"cpu_governor", "load_average", "cores_usable", "cpu_freq_mhz"}
    assert len(env["machine"]["load_average"]) == 3
    out = tmp_path / "results" / "m" / "run"
    CliRunner().invoke(
        app,
        [
            "run",
            str(suite_file("name: m\nmodels: [resnet18]\nmatrix: {resolution: [32]}\nmeasure: [profile]\n")),
            "--out",
            str(out),
            "--no-report",
        ],
    )
    data = json.loads((out / "env.json").read_text())
    data["machine"] = {"load_average": [9.5, 9.0, 8.0], "cores_usable": 2, "cpu_governor": "powersave"}
    data["env_vars"] = {"MALLOC_MMAP_THRESHOLD_": "33554432", "OMP_NUM_THREADS": "1"}
    (out / "env.json").write_text(json.dumps(data))
    md = render_report([out], tmp_path / "rep", formats=["md"])["md"].read_text()
    assert "**MACHINE STATE:** the machine was busy at the start: load average 9.50 on 2 usable cores" in md
    assert "| load average at start | 9.50 / 9.00 / 8.00 (1, 5, 15 min) |" in md
    assert "governor is 'powersave'" in md
    assert "MALLOC_MMAP_THRESHOLD_=33554432, OMP_NUM_THREADS=1" in md
    assert math.isfinite(data["machine"]["load_average"][0])


def test_compare_warns_when_a_cell_ran_at_another_batch_size(suite_file):
    """The trap of a silent fallback: half the batch looks like a throughput regression. compare says why."""
    from bench.gate.regression import compare_results
    from bench.measure.catalogue import thresholds_from

    (cell,) = expand(
        load_suite(
            suite_file("name: c\nmodels: [resnet18]\nmatrix: {resolution: [32], batch_size: [8]}\nmeasure: [speed]\n")
        )
    )

    def result(bs, fallback=None):
        speed = {
            "status": "ok",
            "batch_size": bs,
            "requested_batch_size": 8,
            "fallback": fallback,
            "throughput_img_s": 100.0 * bs / 8,
        }
        return CellResult(cell=cell, status="ok", measurements={"speed": speed})

    thresholds = thresholds_from(None)
    comp = compare_results([result(8)], [result(4, "batch 8 -> 4 after out of memory (x)")], thresholds)
    assert comp.warnings == [
        f"cell {cell.id} ({cell.label()}): speed ran at batch 8 in the baseline and 4 now "
        "(batch 8 -> 4 after out of memory (x)): its timings are not like for like"
    ]
    assert compare_results([result(8)], [result(8)], thresholds).warnings == []
