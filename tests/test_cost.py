"""The cost model (bench.plan.cost) on hand-made inputs with exact answers, the workload counts it is fed
(bench.plan.workload) against the real counter, and `bench plan`'s estimates from a cached calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.plan.cost import (
    Calibration,
    DataWork,
    ForwardWork,
    SpeedWork,
    TrainWork,
    Work,
    estimate,
    forward_s,
    timed_calls,
    total,
    train_step_s,
)

CAL = Calibration(
    dense_flops_s={"fp32": 1e9, "bf16": 0.5e9},
    grouped_flops_s={"fp32": 1e8},
    elementwise_flops_s={"fp32": 1e8},
    train_dense_flops_s={"fp32": 5e8},
    train_grouped_flops_s={"fp32": 5e7},
    op_s=1e-4,
    train_op_s=4e-4,
    profile_s_per_op=1e-3,
    optimizer_s_per_param=1e-8,
    init_s_per_param=1e-8,
    copy_s_per_byte=1e-9,
    save_s_per_byte=2e-9,
    reference_s=0.01,
    render_s_per_image=0.002,
    decode_s_per_image=0.001,
    build_fixed_s=0.5,
    run_fixed_s=3.0,
)
FW = ForwardWork(dense_flops=1e8, grouped_flops=1e7, elementwise_flops=1e6, ops=100)
SPEED = SpeedWork(
    warmup_iters=2, warmup_max_iters=30, warmup_window=3, warmup_max_time_s=10.0, min_repeats=5, min_time_s=0.3
)
approx = lambda x: pytest.approx(x, rel=1e-12)  # noqa: E731


def test_forward_time_is_flops_over_rates_plus_per_call_cost():
    # 4 x (1e8/1e9 + 1e7/1e8 + 1e6/1e8) + 100 x 1e-4
    assert forward_s(FW, 4, CAL) == approx(0.85)
    # bf16 has its own dense rate; grouped and elementwise fall back to fp32's
    assert forward_s(FW, 4, CAL, "bf16") == approx(4 * (0.2 + 0.1 + 0.01) + 0.01)


def test_train_step_is_three_forwards_at_training_rates_plus_optimizer():
    # 4 x 3 x (0.2 + 0.2 + 0.01) + 100 calls x 4e-4 + 1e6 params x 1e-8
    assert train_step_s(FW, 4, 1_000_000, CAL) == approx(4.97)
    # a frozen backbone (10% of the weights train): forward + 0.1 x backward, optimizer on the head only
    assert train_step_s(FW, 4, 1_000_000, CAL, trainable_fraction=0.1) == approx(
        1.2 * 0.41 * 4 + 100 * (1e-4 + 0.1 * 3e-4) + 0.001
    )


def test_timed_calls_follow_the_timing_loop_rules():
    assert timed_calls(SPEED, 0.85) == (4, 5)  # warm-up: the settling window + 1; timed: min_repeats
    assert timed_calls(SpeedWork(min_repeats=5, min_time_s=1.0), 0.01) == (4, 100)  # min_time_s decides
    slow = SpeedWork(warmup_iters=2, min_repeats=10, min_time_s=0.0, max_time_s=60.0, warmup_max_time_s=10.0)
    assert timed_calls(slow, 10.0) == (2, 6)  # max_time_s caps the timed calls, warmup_max_time_s the warm-up


def test_cell_estimate_adds_its_parts():
    work = Work(
        params=1_000_000,
        forward=FW,
        batch_size=4,
        precision="fp32",
        profile=True,
        speed=SPEED,
        train=TrainWork(epochs=2, n_train=10, n_val=5, eval_batch_size=4),
        data=DataWork(render_images=100, decode_images=50),
    )
    e = estimate(work, CAL)
    assert e["build"] == approx(0.51)
    assert e["profile"] == approx(0.22 + 2.5 + 520 * 1e-3)  # forward bs 1 + train step bs 2 + counter overhead per call
    assert e["speed"] == approx(9 * (0.85 + 0.01))  # (4 warm-up + 5 timed) x (batch + reference)
    # 2 epochs x (2 steps + 2 eval batches + a weights copy) + final eval + checkpoint
    assert e["train"] == approx(2 * (2 * 4.97 + 2 * 0.85 + 4e6 * 1e-9) + 2 * 0.85 + 4e6 * 2e-9)
    assert e["data"] == approx(0.25)
    assert e["total"] == approx(0.51 + 3.24 + 7.74 + 24.996 + 0.25)
    skipped = estimate(
        Work(
            params=1_000_000,
            forward=FW,
            batch_size=4,
            profile=True,
            speed=SPEED,
            train=TrainWork(epochs=2, n_train=10, n_val=5, skipped=True),
            data=DataWork(100, 50),
        ),
        CAL,
    )
    assert skipped["train"] == 0 and skipped["data"] == 0 and skipped["total"] == approx(11.49)
    assert total([e, skipped], CAL) == approx(3.0 + 36.736 + 11.49)
    inference_only = estimate(Work(params=1_000_000, forward=FW, batch_size=4, profile=True, profile_train=False), CAL)
    assert inference_only["profile"] == approx(0.22 + 100 * 1e-3)  # no training step counted


def test_calibration_round_trips_through_json():
    assert Calibration.from_dict(json.loads(json.dumps(CAL.to_dict()))) == CAL


# -- workload counts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_meta_count_matches_the_profile_counter(name):
    from bench.measure.flops import count_flops, count_params
    from bench.models.builders import build_model
    from bench.plan.workload import count_model

    counts = count_model(name, 32, 10)
    model = build_model(name, num_classes=10)
    real = count_flops(model, torch.randn(1, 3, 32, 32))
    assert counts["dense_flops"] + counts["grouped_flops"] == real.flops
    assert counts["elementwise_flops"] == real.elementwise_flops
    assert counts["params"] == count_params(model)[0]
    if name == "resnet18":
        assert counts["grouped_flops"] == 0
    else:  # mobilenet_v2's depthwise convolutions: 17 of them, a real share of its FLOPs
        assert 0 < counts["grouped_flops"] < counts["dense_flops"]
    assert counts["ops"] > 50
    assert counts["head_params"] == {"resnet18": 512 * 10 + 10, "mobilenet_v2": 1280 * 10 + 10}[name]


def _suite(tmp_path: Path, text: str):
    from bench.suite.expand import expand
    from bench.suite.load import load_suite

    path = tmp_path / "s.yaml"
    path.write_text(text)
    suite = load_suite(path)
    return suite, expand(suite)


DIGITS = """
name: t
models: [resnet18]
num_classes: 10
matrix: {resolution: [32], batch_size: [16], precision: [fp32, bf16], train.epochs: [2, 4]}
measure: [profile, train]
settings:
  train: {data: {kind: digits, options: {imbalance: 10}, val_fraction: 0.3}, early_stopping: null}
"""


def test_workload_of_a_training_suite(tmp_path):
    from bench.data import load_samples
    from bench.plan.workload import WorkloadCache, cell_works

    suite, cells = _suite(tmp_path, DIGITS)
    works = cell_works(cells, tmp_path, WorkloadCache(None), cpu=True)
    n = len(load_samples("digits", {"imbalance": 10}, tmp_path))
    by = {(c.precision, c.value("train.epochs")): w for c, w in zip(cells, works)}
    fp32_long = by[("fp32", 4)].train
    assert fp32_long.n_train + fp32_long.n_val + fp32_long.n_test == n
    assert fp32_long.n_val == round(0.3 * n) and fp32_long.n_test == round(0.2 * n)  # test_fraction's default
    assert by[("fp32", 2)].train.served and not fp32_long.served  # an epoch sweep trains its longest cell only
    assert by[("bf16", 4)].train.skipped == (
        not __import__("bench.platform.device", fromlist=["x"]).cpu_precision_is_native("bf16")
    )


def test_plan_prints_estimates_from_a_cached_calibration(tmp_path, monkeypatch):
    from dataclasses import replace

    from typer.testing import CliRunner

    from bench.cli import app
    from bench.plan.calibration import machine_key, save_cached

    cal_path = tmp_path / "cal.json"
    save_cached(cal_path, replace(CAL, key=machine_key(torch.device("cpu"))))
    monkeypatch.setenv("BENCH_CALIBRATION", str(cal_path))
    monkeypatch.setenv("BENCH_WORKLOAD_CACHE", str(tmp_path / "w.json"))
    (tmp_path / "s.yaml").write_text(DIGITS.replace("precision: [fp32, bf16]", "precision: [fp32]"))
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "s.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    cells = doc["cells"]
    assert len(cells) == 2 and doc["calibration"]["op_s"] == CAL.op_s  # the cached one: nothing measured
    assert doc["estimate_total_s"] == approx(CAL.run_fixed_s + sum(c["estimate_s"] for c in cells))
    short, long = sorted(cells, key=lambda c: c["settings"]["train"]["epochs"])
    assert short["estimate_parts_s"]["train"] == 0 and long["estimate_parts_s"]["train"] > 0
    assert (tmp_path / "w.json").is_file()  # FLOP counts cached for the next plan
    table = CliRunner().invoke(app, ["plan", str(tmp_path / "s.yaml")])
    assert table.exit_code == 0 and "est. total" in table.output and "estimated time:" in table.output


def test_calibration_fit_recovers_known_rates_and_never_goes_negative():
    """The fit behind the calibration (bench.plan.calibration._fit_rates) on hand-made timings: made exactly from
    known rates, it gives them back; a point timed 3x too slow (a busy moment) moves the rates but leaves
    every one positive and finite, where the old two-point difference gave 2e18 FLOP/s."""
    from bench.plan.calibration import _fit_rates

    true = {"dense": 5e10, "grouped": 2e9, "elementwise": 1e9, "op_s": 2e-5}
    works = [  # (dense, grouped, elementwise FLOPs of one input, operator calls), batch
        ({"dense_flops": 1e8, "grouped_flops": 0.0, "elementwise_flops": 2e6, "ops": 70}, 1),
        ({"dense_flops": 1e8, "grouped_flops": 0.0, "elementwise_flops": 2e6, "ops": 70}, 32),
        ({"dense_flops": 6e7, "grouped_flops": 4e6, "elementwise_flops": 5e6, "ops": 150}, 1),
        ({"dense_flops": 6e7, "grouped_flops": 4e6, "elementwise_flops": 5e6, "ops": 150}, 16),
        ({"dense_flops": 0.0, "grouped_flops": 1e6, "elementwise_flops": 0.0, "ops": 6}, 8),
        ({"dense_flops": 0.0, "grouped_flops": 0.0, "elementwise_flops": 1e6, "ops": 1}, 64),
    ]

    def seconds(w, batch, k=1.0):
        return (
            k
            * batch
            * (
                w["dense_flops"] / true["dense"]
                + w["grouped_flops"] / true["grouped"]
                + w["elementwise_flops"] / true["elementwise"]
            )
            + w["ops"] * true["op_s"]
        )

    fitted = _fit_rates([(w, b, seconds(w, b)) for w, b in works], "inference")
    for key, value in true.items():
        assert fitted[key] == pytest.approx(value, rel=1e-6), key
    fitted = _fit_rates([(w, b, seconds(w, b, k=3.0)) for w, b in works], "training")  # FLOPs x 3 at the same rates
    for key, value in true.items():
        assert fitted[key] == pytest.approx(value, rel=1e-6), key
    noisy = [(w, b, seconds(w, b) * (3.0 if i == 1 else 1.0)) for i, (w, b) in enumerate(works)]
    fitted = _fit_rates(noisy, "inference")
    assert all(0 < fitted[k] < 1e15 for k in ("dense", "grouped", "elementwise")) and fitted["op_s"] >= 0


def test_precision_ratio_takes_out_the_per_call_cost_but_never_divides_by_nothing():
    from bench.plan.calibration import compute_ratio

    assert compute_ratio(0.011, 0.002, 0.001) == pytest.approx(10.0)  # (11 - 1) / (2 - 1) ms: the compute alone
    # a fitted per-call cost at or above fp32's whole time (seen on a fresh clone: a 10^7 x "slowdown"):
    # at most half the shorter time is taken out, so the ratio stays between the raw one and twice it
    assert compute_ratio(0.011, 0.002, 0.003) == pytest.approx((0.011 - 0.001) / (0.002 - 0.001))
    assert 0.011 / 0.002 <= compute_ratio(0.011, 0.002, 0.5) <= 2 * 0.011 / 0.002
    assert compute_ratio(0.001, 0.004, 0.01) == pytest.approx(0.0005 / 0.0035)  # faster than fp32 stays faster
    assert compute_ratio(0.003, 0.003, -1.0) == 1.0  # a negative fitted cost is not added
    with pytest.raises(ValueError):
        compute_ratio(0.0, 0.003, 0.001)
