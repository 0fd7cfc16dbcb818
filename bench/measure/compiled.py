"""torch.compile in a speed cell: the first compiled call timed apart, recompilations and graph breaks counted.

torch.compile compiles lazily, on the first call; that call's time (tracing, graph capture, code
generation) is `speed.compile_first_call_s`, kept out of the steady-state timings (the first call is never
timed). Dynamo's own counters (`torch._dynamo.utils.counters`) are read before the first call, after it and
after the timing: frames compiled after the first call are recompilations (`speed.recompilations`: 0 for
a fixed shape; a guard that fails, a new shape, recompiles), and graph breaks (`speed.graph_breaks`) are
the places dynamo gave up tracing and fell back to Python, with their reasons. A failure to compile fails
the cell unless `speed.compile_fallback: true`, and then the cell is timed eager with the error recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from bench.measure.catalogue import COMPILE_FIRST_CALL, GRAPH_BREAKS, RECOMPILATIONS


class CompileFailed(RuntimeError):
    """torch.compile failed on the first call and no fallback was asked for: the cell fails."""


def _counters() -> dict[str, dict[str, int]]:
    from torch._dynamo.utils import counters

    return {k: dict(v) for k, v in counters.items()}


def _frames(c: dict[str, dict[str, int]]) -> int:
    return int(c.get("frames", {}).get("total", 0))


def _breaks(c: dict[str, dict[str, int]]) -> dict[str, int]:
    return dict(c.get("graph_break", {}))


class CompileWatch:
    """Around a compiled callable: the first call's time, and dynamo's counters after it and at the end."""

    def __init__(self) -> None:
        torch._dynamo.reset()  # a cold start: the first call compiles, whatever ran in this process before
        self.before = _counters()
        self.after_first: dict[str, dict[str, int]] | None = None
        self.first_call_s: float | None = None
        self.error: str | None = None

    def first_call(self, call: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> Any:
        start = time.perf_counter()
        out = call()
        sync()
        self.first_call_s = time.perf_counter() - start
        self.after_first = _counters()
        return out

    def record(self) -> dict[str, Any]:
        """The speed record's compile fields (call after the timing)."""
        if self.after_first is None:
            return {
                COMPILE_FIRST_CALL.key: None,
                RECOMPILATIONS.key: None,
                GRAPH_BREAKS.key: None,
                "compile_error": self.error,
            }
        end = _counters()
        breaks = _breaks(end)
        for reason, n in _breaks(self.before).items():
            breaks[reason] = breaks.get(reason, 0) - n
        breaks = {" ".join(k.split())[:300]: v for k, v in breaks.items() if v > 0}
        return {
            COMPILE_FIRST_CALL.key: self.first_call_s,
            RECOMPILATIONS.key: _frames(end) - _frames(self.after_first),
            GRAPH_BREAKS.key: sum(breaks.values()),
            "graph_break_reasons": breaks,
            "compiled_frames": _frames(end) - _frames(self.before),
            "compile_error": self.error,
        }


def compile_first_call(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    backend: str,
    fallback: bool,
    sync: Callable[[], None] = lambda: None,
) -> tuple[Callable[[], Any], Any, CompileWatch]:
    """Compile, make and time the first call; (the callable to time, the first output, the watch).

    A failure raises CompileFailed, or with `fallback` gives the eager callable and records the error."""
    watch = CompileWatch()
    try:
        compiled = torch.compile(model, backend=backend)  # an unknown backend fails here, the rest on the first call
        out = watch.first_call(lambda: compiled(x), sync)
    except Exception as exc:  # noqa: BLE001 - dynamo and inductor raise many kinds; all fail the compile
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if not fallback:
            raise CompileFailed(
                f"torch.compile failed on the first call ({message}) — set settings.speed.compile_fallback: true "
                "to time the model eager instead (recorded), or drop compile: true"
            ) from exc
        watch.error = message
        return (lambda: model(x)), model(x), watch
    return (lambda: compiled(x)), out, watch
