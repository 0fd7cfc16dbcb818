"""torch.compile in speed cells: the first compiled call timed apart, recompilations and graph breaks counted from
dynamo's counters, a compile failure fails the cell unless the fallback is opted in.

Dynamo runs for real here; its `eager` backend (settings.speed.compile_backend) skips inductor's code
generation, which on a shared 2-core machine takes minutes and is not what these tests are about."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.measure.base import CellContext
from bench.measure.catalogue import COMPILE_FIRST_CALL, GRAPH_BREAKS, LATENCY_SAMPLES, RECOMPILATIONS
from bench.measure.compiled import CompileFailed, CompileWatch, compile_first_call
from bench.measure.speed import Speed
from bench.models import get_entry
from tests.cell_factory import make_cell

FAST = {"warmup_iters": 1, "min_repeats": 5, "min_time_s": 0.0, "energy": False, "reference": False}


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


def _measure(model: nn.Module, **settings) -> dict:
    cell = make_cell(resolution=16, batch_size=4, compile=True, measure=("speed",))
    ctx = CellContext(cell=cell, model=model, device=torch.device("cpu"), entry=get_entry("resnet18"))
    return Speed({**FAST, **settings}).measure(ctx)


@pytest.fixture(scope="module")
def compiled_record():
    return _measure(small_model(), compile_backend="eager")


def test_a_compiled_cell_records_its_first_call_apart_and_no_recompilation(compiled_record):
    data = compiled_record
    first = data[COMPILE_FIRST_CALL.key]
    assert first is not None and first > 0
    assert data[RECOMPILATIONS.key] == 0  # a fixed shape compiles once
    assert data[GRAPH_BREAKS.key] == 0 and data["graph_break_reasons"] == {}
    assert data["compiled_frames"] >= 1 and data["compile_error"] is None
    # the first call (tracing) is not among the timed calls, and is far slower than any of them
    assert first > 5 * max(data[LATENCY_SAMPLES.key])


def test_a_new_shape_recompiles_and_a_python_call_breaks_the_graph():
    class Chatty(nn.Module):
        def forward(self, x):
            y = x * 2
            print(end="")  # dynamo cannot trace print: a graph break
            return y + 1

    watch = CompileWatch()
    compiled = torch.compile(Chatty(), backend="eager")
    watch.first_call(lambda: compiled(torch.randn(2, 3)))
    compiled(torch.randn(2, 3))  # same shape: no recompilation
    assert watch.record()[RECOMPILATIONS.key] == 0
    compiled(torch.randn(5, 7))  # another shape: the guards fail, dynamo compiles again
    record = watch.record()
    assert record[RECOMPILATIONS.key] > 0
    assert record[GRAPH_BREAKS.key] >= 1 and any("print" in reason for reason in record["graph_break_reasons"])


@pytest.fixture(scope="module")
def failing_backend():
    from torch._dynamo import register_backend

    name = "bench_test_failing"

    def fail(gm, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    try:
        register_backend(fail, name=name)
    except Exception:  # noqa: BLE001 - registered already in this process
        pass
    return name


def test_a_compile_failure_fails_the_cell(failing_backend):
    with pytest.raises(CompileFailed, match="torch.compile failed on the first call.*compile_fallback: true"):
        _measure(small_model(), compile_backend=failing_backend)


def test_the_opted_in_fallback_times_eager_and_records_the_error(failing_backend):
    data = _measure(small_model(), compile_backend=failing_backend, compile_fallback=True)
    assert "cannot compile anything" in data["compile_error"]
    assert data[COMPILE_FIRST_CALL.key] is None and data[RECOMPILATIONS.key] is None
    assert len(data[LATENCY_SAMPLES.key]) >= 5  # timed, eager


def test_an_unknown_compile_backend_fails_with_the_fix():
    with pytest.raises(CompileFailed, match="compile_fallback"):
        compile_first_call(small_model(), torch.randn(1, 3, 8, 8), backend="no_such_backend", fallback=False)


def test_the_report_shows_the_compile_time_apart_and_the_recompilations(compiled_record, tmp_path):
    from bench.core.result import CellResult
    from bench.report import render_report
    from bench.store.run_store import RunStore

    cell = make_cell(resolution=16, batch_size=4, compile=True, measure=("speed",))
    store = RunStore.create(tmp_path / "results" / "compiled" / "run")
    store.write_cell(CellResult(cell=cell, status="ok", measurements={"speed": {"status": "ok", **compiled_record}}))
    md = render_report([store.run_dir], tmp_path / "report")["md"].read_text()
    part = md.split("## How each cell was measured")[1].split("\n## ")[0]
    first = compiled_record[COMPILE_FIRST_CALL.key]
    assert f"first call {first:.3g} s (not timed), 0 recompilations, 0 graph breaks" in part
