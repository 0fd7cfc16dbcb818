"""backend: onnxruntime beside eager: ids unchanged for eager, agreement checked and recorded, a real cell timed."""

from __future__ import annotations

import json

import pytest

from bench.core.cell import cell_id
from bench.core.errors import InputError
from bench.measure.backends import BackendDisagrees, check_cell, judge
from bench.measure.catalogue import THROUGHPUT
from bench.suite.expand import expand
from bench.suite.load import load_suite

SUITE = """
name: backends
models: [{name: small_cnn, kwargs: {filters: 8, dense: 32}}]
num_classes: 10
matrix: {resolution: [16], batch_size: [8]BACKEND}
measure: [speed]
isolation: none
settings:
  speed: {warmup_iters: 1, min_repeats: 3, min_time_s: 0.0, energy: false}
"""


def test_eager_keeps_cell_ids_and_onnxruntime_is_a_new_cell(suite_file):
    plain = expand(load_suite(suite_file(SUITE.replace("BACKEND", ""), "a.yaml")))
    both = expand(load_suite(suite_file(SUITE.replace("BACKEND", ", backend: [eager, onnxruntime]"), "b.yaml")))
    assert "backend" not in plain[0].identity()
    assert [c.backend for c in both] == ["eager", "onnxruntime"]
    assert both[0].id == plain[0].id and both[1].id != plain[0].id
    assert both[1].identity()["backend"] == "onnxruntime" and "backend=onnxruntime" in both[1].label()
    legacy = plain[0].to_dict()
    for key in ("id", "weights", "axes", "cudnn_benchmark", "backend"):
        legacy.pop(key)
    assert cell_id(legacy) == plain[0].id  # an id from before the axis existed


def test_unknown_backend_is_an_input_error(suite_file):
    with pytest.raises(InputError, match="backend"):
        load_suite(suite_file(SUITE.replace("BACKEND", ", backend: [tensorrt]")))


def test_disagreement_beyond_the_tolerance_fails():
    close = {"relative_diff": 2e-7, "top1_agreement": 1.0, "top1_agree": 32, "images": 32}
    judge(close, 1e-3, 31 / 32)
    with pytest.raises(BackendDisagrees, match="of the logits' range"):
        judge({**close, "relative_diff": 5e-3}, 1e-3, 31 / 32)
    with pytest.raises(BackendDisagrees, match="top-1 agrees on 30 of 32"):
        judge({**close, "top1_agreement": 30 / 32, "top1_agree": 30}, 1e-3, 31 / 32)


def test_onnxruntime_takes_fp32_only():
    check_cell("fp32", False, False)
    with pytest.raises(InputError, match="fp32 only, not bf16"):
        check_cell("bf16", False, False)
    with pytest.raises(InputError, match="compile"):
        check_cell("fp32", False, True)


def test_onnxruntime_cell_beside_eager(suite_file, tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    from bench.execution.sweep import run_cells
    from bench.store.run_store import RunStore

    suite = load_suite(suite_file(SUITE.replace("BACKEND", ", backend: [eager, onnxruntime]")))
    store = RunStore.create(tmp_path / "run")
    run_cells(expand(suite), store, torch.device("cpu"), base_dir=suite.base_dir())
    cells = {
        c["config"]["backend"]: c for c in (json.loads(p.read_text()) for p in (store.run_dir / "cells").glob("*.json"))
    }
    assert set(cells) == {"eager", "onnxruntime"}
    for cell in cells.values():
        assert cell["status"] == "ok", cell.get("reason")
    ort = cells["onnxruntime"]["measurements"]["speed"]
    assert ort["backend"] == "onnxruntime" and ort[THROUGHPUT.key] > 0
    onnx = ort["onnx"]
    assert onnx["provider"] == "CPUExecutionProvider" and onnx["opset"] >= 13 and onnx["exporter"]
    agreement = onnx["agreement"]
    assert agreement["images"] == 32 and agreement["relative_diff"] <= 1e-3 and agreement["top1_agree"] >= 31
    assert cells["eager"]["measurements"]["speed"]["onnx"] is None
