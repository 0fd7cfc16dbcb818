"""bench.tools.parity's reference loop (timm's method) and the interleaved comparison, on tiny models."""

import pytest
import torch

from bench.platform.allocator import PINNED_HEAP_ENV
from bench.tools import parity
from bench.tools.parity import compare, reference_loop, summarize


class Counting(torch.nn.Module):
    """Records every call: batch size, train/eval mode, inference mode, the dtype autocast computes in."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        self.calls = []

    def forward(self, x):
        y = self.lin(x)
        self.calls.append(
            {
                "n": x.shape[0],
                "training": self.training,
                "inference": torch.is_inference_mode_enabled(),
                "dtype": y.dtype,
            }
        )
        return y


# bench's speed settings for a short real run: a bounded warm-up, 3 timed calls, no reference loop inside
QUICK_SPEED = {"warmup_iters": 1, "warmup_max_iters": 2, "min_repeats": 3, "min_time_s": 0.0, "reference": False}


def _compare_small(**options):
    """compare() on small_cnn at batch 2, 32 px (the size every comparison here runs at) with these options."""
    return compare(["small_cnn"], batch_size=2, resolution=32, **options)


class FakeClock:
    def __init__(self, step=0.5):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_reference_counts_only_timed_images():
    m = Counting().train()
    x = torch.randn(3, 4)
    r = reference_loop(m, x, device=torch.device("cpu"), warmup_iters=2, bench_iters=5)
    assert len(m.calls) == 7  # 2 warm-up + 5 timed
    assert r.calls == 5 and r.warmup_calls == 2
    assert r.images == 15  # 5 timed calls x batch 3; warm-up images not counted
    assert len(r.step_times_s) == 5


def test_reference_rate_is_images_over_wall_time():
    m = Counting()
    clock = FakeClock(0.5)
    r = reference_loop(m, torch.randn(4, 4), device=torch.device("cpu"), warmup_iters=1, bench_iters=3, clock=clock)
    # clock reads: start, then per call t0 and end (2 reads), then the final read: 1 + 2*3 + 1 = 8 reads of 0.5 s;
    # elapsed = last - start = 7 * 0.5
    assert r.elapsed_s == pytest.approx(3.5)
    assert r.img_s == pytest.approx(12 / 3.5)
    assert r.median_img_s == pytest.approx(4 / 0.5)  # batch 4 / the median call time
    assert all(s == pytest.approx(0.5) for s in r.step_times_s)


def test_reference_counts_page_faults_over_its_timed_calls_only(monkeypatch):
    reads = iter([100, 160])  # read before the first timed call and after the last: not around the warm-up
    monkeypatch.setattr(parity, "minor_faults", lambda: next(reads))
    r = reference_loop(Counting(), torch.randn(2, 4), device=torch.device("cpu"), warmup_iters=2, bench_iters=3)
    assert r.minor_faults == 60 and r.page_faults_per_call == 20
    meta = reference_loop(
        Counting().to("meta"),
        torch.randn(2, 4, device="meta"),
        device=torch.device("meta"),
        warmup_iters=0,
        bench_iters=1,
    )
    assert (
        meta.minor_faults is None and meta.page_faults_per_call is None
    )  # host faults are counted for a CPU's calls only


def test_pinned_allocator_is_applied_before_anything_runs_and_recorded(monkeypatch):
    events = []
    pinned = {"allocator": "glibc 2.36", "pinned": True, "mmap": "off", "trim_threshold": 2}
    real_ref = parity.reference_loop

    def pin():
        events.append("pin")
        return pinned

    def ref(*a, **k):
        events.append("ref")
        return real_ref(*a, **k)

    faults = iter([3.0, 1.0, 2.0, 4.0, 5.0])  # then one for the process-isolated compare and one for the unpinned one

    def bench_round(cell, device, isolation, server, clock="wall"):
        events.append("bench")
        return {"throughput_img_s": 10.0, "throughput_mean_img_s": 10.0, "page_faults_per_call": next(faults)}

    monkeypatch.setattr(parity, "pin_glibc_heap", pin)
    monkeypatch.setattr(parity, "reference_loop", ref)
    monkeypatch.setattr(parity, "_bench_round", bench_round)
    (row,) = _compare_small(rounds=3, warmup_iters=1, bench_iters=2, allocator="pinned")
    assert events[0] == "pin" and events.count("pin") == 1
    assert row.allocator == pinned
    assert row.bench_faults_per_call == 2.0  # the median over rounds
    assert row.reference_faults_per_call is not None and row.reference_faults_per_call >= 0
    servers = []

    class Server:
        def __init__(self, extra_env=None):
            servers.append(extra_env)

        def close(self):
            pass

    monkeypatch.setattr(parity, "ForkServer", Server)  # parity imports ForkServer at module level: patch its name
    _compare_small(rounds=1, warmup_iters=1, bench_iters=2, allocator="pinned", isolation="process")
    assert servers == [PINNED_HEAP_ENV]  # the fork server is a fresh interpreter: it gets the settings by environment
    events.clear()
    (row,) = _compare_small(rounds=1, warmup_iters=1, bench_iters=2)
    assert "pin" not in events and row.allocator is None  # a library call leaves the process's allocator alone


def test_reference_runs_eval_inference_mode_and_autocast():
    m = Counting().train()
    reference_loop(m, torch.randn(2, 4), device=torch.device("cpu"), precision="bf16", warmup_iters=1, bench_iters=2)
    assert all(not c["training"] and c["inference"] for c in m.calls)
    assert {c["dtype"] for c in m.calls} == {torch.bfloat16}
    m2 = Counting()
    reference_loop(m2, torch.randn(2, 4), device=torch.device("cpu"), precision="fp32", warmup_iters=0, bench_iters=1)
    assert m2.calls[0]["dtype"] == torch.float32


def test_reference_rejects_no_timed_calls():
    with pytest.raises(ValueError):
        reference_loop(Counting(), torch.randn(1, 4), device=torch.device("cpu"), bench_iters=0)


def test_summarize_exact():
    s = summarize([10.0, 12.0, 9.0, 20.0], [10.0, 10.0, 10.0, 10.0], bench_mean=[5.0, 10.0, 10.0, 10.0])
    assert s["ratios"] == [1.0, 1.2, 0.9, 2.0]
    assert s["ratio"] == pytest.approx(1.1)  # median of 0.9, 1.0, 1.2, 2.0
    assert s["ratio_min"] == 0.9 and s["ratio_max"] == 2.0
    assert s["ratio_iqr"] == pytest.approx(1.4 - 0.975)  # linear quantiles: q75 = 1.2 + 0.25*0.8, q25 = 0.9 + 0.75*0.1
    assert s["ratio_mean"] == pytest.approx(1.0)
    assert s["bench_img_s"] == pytest.approx(11.0) and s["reference_img_s"] == 10.0
    with pytest.raises(ValueError):
        summarize([1.0], [1.0, 2.0])


def test_parity_verdict_judges_the_like_for_like_ratios():
    from bench.tools.parity import ParityRow

    def row(ratio, mean, medians):
        return ParityRow(
            model="m",
            precision="fp32",
            batch_size=1,
            resolution=8,
            channels_last=False,
            device="cpu",
            threads=1,
            isolation="none",
            rounds=1,
            clock="wall",
            ratio=ratio,
            ratio_min=ratio,
            ratio_max=ratio,
            ratio_iqr=0.0,
            ratio_mean=mean,
            bench_img_s=1.0,
            reference_img_s=1.0,
            ratio_of_medians=medians,
        )

    assert row(1.08, 1.024, 1.033).within(0.05)  # the headline's median-vs-mean gap is not judged
    assert not row(1.0, 1.06, 1.0).within(0.05) and not row(1.0, 1.0, 0.94).within(0.05)
    assert row(1.0, 1.04, None).within(0.05)  # rows written before ratio_of_medians existed


def test_compare_interleaves_and_flips_order(monkeypatch):
    order = []
    real_ref = parity.reference_loop

    def ref(*a, **k):
        order.append("ref")
        return real_ref(*a, **k)

    def bench_round(cell, device, isolation, server, clock="wall"):
        order.append("bench")
        assert cell.measure == ("speed",) and cell.batch_size == 2 and cell.resolution == 32
        return {"throughput_img_s": 100.0, "throughput_mean_img_s": 90.0}

    monkeypatch.setattr(parity, "reference_loop", ref)
    monkeypatch.setattr(parity, "_bench_round", bench_round)
    rows = _compare_small(rounds=3, warmup_iters=1, bench_iters=2)
    assert order == ["ref"] + [
        "ref",
        "bench",
        "bench",
        "ref",
        "ref",
        "bench",
    ]  # a discarded priming run, then the rounds
    (row,) = rows
    assert row.rounds == 3 and len(row.ratios) == 3
    assert row.ratio == pytest.approx(100.0 / row.reference_img_s, rel=0.5)
    assert row.bench_samples == [100.0] * 3
    assert row.control is None  # no A/A control unless asked


def test_control_runs_the_reference_twice_around_bench_and_summarises_second_over_first(monkeypatch):
    # the priming run (discarded) 99; round 1: reference 10, control 12; round 2: control 8, reference 10
    order, rates = [], iter([99.0, 10.0, 12.0, 8.0, 10.0])

    class Ref:
        def __init__(self, img_s):
            self.img_s = self.median_img_s = img_s
            self.page_faults_per_call = None

    def ref(*a, **k):
        order.append("ref")
        return Ref(next(rates))

    def bench_round(cell, device, isolation, server, clock="wall"):
        order.append("bench")
        return {"throughput_img_s": 10.0, "throughput_mean_img_s": 10.0}

    monkeypatch.setattr(parity, "reference_loop", ref)
    monkeypatch.setattr(parity, "_bench_round", bench_round)
    (row,) = _compare_small(rounds=2, control=True)
    assert order == ["ref"] + ["ref", "bench", "ref", "ref", "bench", "ref"]
    assert row.reference_samples == [10.0, 10.0] and row.control["control_samples"] == [12.0, 8.0]
    assert row.control["ratios"] == [1.2, 0.8]
    assert (
        row.control["ratio"] == pytest.approx(1.0)
        and row.control["ratio_min"] == 0.8
        and row.control["ratio_max"] == 1.2
    )
    assert row.ratios == [1.0, 1.0]


def test_compare_runs_bench_speed_for_real():
    rows = _compare_small(
        precisions=["fp32"], rounds=2, warmup_iters=2, bench_iters=3, speed_settings=QUICK_SPEED, with_mfu=True
    )
    (row,) = rows
    assert row.model == "small_cnn" and row.precision == "fp32" and row.device == "cpu"
    assert len(row.bench_samples) == 2 and all(v > 0 for v in row.bench_samples)
    assert len(row.reference_samples) == 2 and all(v > 0 for v in row.reference_samples)
    assert row.ratios == pytest.approx([b / r for b, r in zip(row.bench_samples, row.reference_samples)])
    assert row.ratio_of_medians > 0
    assert row.bench_faults_per_call >= 0 and row.reference_faults_per_call >= 0  # counted on both sides (CPU)
    assert row.gflops_per_image > 0
    bench_mfu = row.mfu["bench"]  # against this CPU's measured peak (bench.platform.peaks.measured_cpu_peak)
    assert bench_mfu["utilisation"] > 0 and bench_mfu["peak_kind"] == "measured"
    assert bench_mfu["utilisation"] == pytest.approx(bench_mfu["achieved_tflop_s"] / bench_mfu["peak_tflop_s"])


def test_thread_cpu_clock_reaches_bench_and_reference(monkeypatch):
    """With clock thread_cpu both loops read time.thread_time: a fake one counting reads proves it."""
    import time as time_module

    reads = {"n": 0}

    def fake_thread_time():
        reads["n"] += 1
        return reads["n"] * 0.001

    monkeypatch.setitem(parity.CLOCKS, "thread_cpu", fake_thread_time)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = _compare_small(
            rounds=1,
            warmup_iters=1,
            bench_iters=3,
            clock="thread_cpu",
            speed_settings={**QUICK_SPEED, "max_repeats": 3},
        )
    finally:
        torch.set_num_threads(threads)
    (row,) = rows
    assert row.clock == "thread_cpu"
    # reference: 8 reads 1 ms apart -> 7 ms for 6 images; bench: every timed call 1 ms apart -> 2 / 0.001 img/s
    assert row.reference_img_s == pytest.approx(6 / 0.007)
    assert row.bench_img_s == pytest.approx(2 / 0.001)
    assert time_module.perf_counter() > 0


def test_compare_rejects_bad_arguments():
    with pytest.raises(ValueError):
        compare(["small_cnn"], clock="sundial")
    with pytest.raises(ValueError):
        compare(["small_cnn"], isolation="process", clock="thread_cpu")
    with pytest.raises(ValueError):
        compare(["small_cnn"], isolation="thread")
    with pytest.raises(ValueError):
        compare(["small_cnn"], rounds=0)
    with pytest.raises(ValueError, match="allocator"):
        compare(["small_cnn"], allocator="jemalloc")


def test_best_loop_runs_in_a_fresh_pinned_process_and_every_round_gets_a_ratio_to_it():
    rows = _compare_small(rounds=2, warmup_iters=1, bench_iters=3, speed_settings=QUICK_SPEED, best=True)
    (row,) = rows
    assert len(row.best_samples) == 2 and all(v > 0 for v in row.best_samples)
    assert row.best_img_s == pytest.approx(sorted(row.best_samples)[0] / 2 + sorted(row.best_samples)[1] / 2)
    ratios = [b / p for b, p in zip(row.bench_samples, row.best_samples)]
    assert row.ratio_to_best == pytest.approx(sorted(ratios)[0] / 2 + sorted(ratios)[1] / 2)
    assert row.best_faults_per_call is not None


def test_best_loop_is_started_with_the_heap_pinned():
    import json
    import subprocess
    import sys

    from bench.platform.allocator import process_env

    # what best_loop's process is started with, as glibc reads it at start-up: the allocator says it is pinned
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from bench.platform import allocator; print(json.dumps(allocator.describe()))",
        ],
        env=process_env("pinned"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["allocator"] == "pinned"
    assert all(process_env("pinned")[k] == v for k, v in PINNED_HEAP_ENV.items())


def test_best_is_refused_off_the_cpu_wall_clock():
    with pytest.raises(ValueError, match="best"):
        compare(["small_cnn"], batch_size=2, resolution=32, best=True, clock="thread_cpu")
