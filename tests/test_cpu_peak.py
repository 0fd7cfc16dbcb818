"""A CPU's measured peak (bench.platform.peaks.measured_cpu_peak) and MFU against it."""

import json

import pytest
import torch

from bench.core.result import CellResult
from bench.execution.cell import attach_mfu
from bench.measure.catalogue import (
    FLOPS,
    INFERENCE_MFU,
    THROUGHPUT,
    TRAIN_FLOPS_PER_IMAGE,
    TRAIN_THROUGHPUT,
    TRAINING_MFU,
)
from bench.platform import peaks
from tests.cell_factory import make_cell


def test_measured_peak_is_a_real_matmul_rate_cached_per_machine_torch_threads_and_precision(tmp_path, monkeypatch):
    monkeypatch.setattr(peaks, "_MEASURED", {})
    cache = tmp_path / "cpu-peaks.json"
    peak = peaks.measured_cpu_peak("fp32", 1, cache=cache)
    assert peak["flop_s"] > 1e8  # any CPU multiplies 512x512 matrices faster than 0.1 GFLOP/s
    assert peak["method"].startswith("measured: the best of") and "1 torch threads" in peak["method"]
    stored = json.loads(cache.read_text())
    (key,) = stored
    assert "1 threads" in key and "fp32" in key and torch.__version__ in key
    # once per process: the second call is the first one's
    monkeypatch.setattr(peaks, "time_cpu_peak", lambda *a, **k: pytest.fail("timed twice in one process"))
    assert peaks.measured_cpu_peak("fp32", 1, cache=cache) is peak


def test_the_cache_keeps_the_best_peak_so_far(tmp_path, monkeypatch):
    """A loaded machine measures less than it can do: a later, lower measurement does not replace a higher one,
    a higher one does."""
    cache = tmp_path / "cpu-peaks.json"
    key = peaks._peak_key("fp32", 1)

    def timed(flop_s):
        return lambda *a, **k: {"flop_s": flop_s, "precision": "fp32", "method": f"measured: {flop_s}"}

    cache.write_text(json.dumps({key: {"flop_s": 5e10, "precision": "fp32", "method": "measured: earlier"}}))
    for flop_s, expected in ((1e9, 5e10), (9e10, 9e10)):
        monkeypatch.setattr(peaks, "_MEASURED", {})
        monkeypatch.setattr(peaks, "time_cpu_peak", timed(flop_s))
        assert peaks.measured_cpu_peak("fp32", 1, cache=cache)["flop_s"] == expected
        assert json.loads(cache.read_text())[key]["flop_s"] == expected


def test_a_process_that_only_repeats_timings_reuses_the_cached_peak(tmp_path, monkeypatch):
    """`bench gate`'s sides set REUSE_ENV: a cached peak is used without timing matmuls; without one it is timed."""
    cache = tmp_path / "cpu-peaks.json"
    key = peaks._peak_key("fp32", 1)
    monkeypatch.setenv(peaks.REUSE_ENV, "1")
    monkeypatch.setattr(peaks, "_MEASURED", {})
    monkeypatch.setattr(peaks, "time_cpu_peak", lambda *a, **k: {"flop_s": 7e9, "precision": "fp32", "method": "m"})
    assert peaks.measured_cpu_peak("fp32", 1, cache=cache)["flop_s"] == 7e9  # nothing cached: timed
    cache.write_text(json.dumps({key: {"flop_s": 5e10, "precision": "fp32", "method": "measured: earlier"}}))
    monkeypatch.setattr(peaks, "_MEASURED", {})
    monkeypatch.setattr(peaks, "time_cpu_peak", lambda *a, **k: pytest.fail("timed although a peak is cached"))
    assert peaks.measured_cpu_peak("fp32", 1, cache=cache)["flop_s"] == 5e10


def test_mfu_uses_a_measured_peak_where_the_table_has_none():
    measured = {"flop_s": 1e11, "precision": "fp32", "method": "measured: test"}
    m = peaks.mfu(2.5e10, "CPU Some Processor", "fp32", measured=measured)
    assert m["utilisation"] == pytest.approx(0.25)
    assert m["peak_kind"] == "measured" and m["peak_source"] == "measured: test" and m["peak_tflop_s"] == 0.1
    assert peaks.mfu(2.5e10, "CPU Some Processor", "fp32")["utilisation"] is None


def test_every_cpu_cell_with_speed_or_training_gets_an_mfu_against_the_measured_peak(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(peaks, "_MEASURED", {})
    cell = make_cell(model="small_cnn", family="small_cnn", resolution=32, batch_size=2)
    result = CellResult(
        cell=cell,
        status="ok",
        measurements={
            "profile": {"status": "ok", FLOPS.key: 2e9, TRAIN_FLOPS_PER_IMAGE.key: 6e9},
            "speed": {"status": "ok", THROUGHPUT.key: 10.0, "threads": 1},
            "train": {"status": "ok", TRAIN_THROUGHPUT.key: 2.0},
        },
    )
    attach_mfu(result, torch.device("cpu"))
    flop_s = peaks.measured_cpu_peak("fp32", 1)["flop_s"]
    speed, train = result.measurements["speed"], result.measurements["train"]
    assert speed[INFERENCE_MFU.key] == pytest.approx(2e10 / flop_s)
    assert train[TRAINING_MFU.key] == pytest.approx(1.2e10 / flop_s)
    assert speed["peak_kind"] == train["peak_kind"] == "measured"
    assert speed["peak_source"].startswith("measured:") and speed["mfu_reason"] is None
