"""The runner: executes a suite's cells and records each into the store.

The sweep's logic (skip finished cells, train an epoch sweep once, write each result and results.csv as it
lands) is here, once; *where* the cells run is an executor's business (bench.executors: `local`, one after
the other on this machine, the default; `ray`, as tasks on a Ray cluster). `run_cell` is what runs one cell
wherever it runs.

A cell's failure is that cell's alone: any exception while building the model or measuring is caught,
recorded with its type, message and traceback, and the sweep goes on. With process isolation
(bench.isolation; `isolation: auto`, the default, gives each cell that measures speed a fresh child
process) a crash or an out-of-memory kill of the child is that cell's failure too. A cell already finished in the
run directory (same id, status ok or skipped) is not run again, so rerunning into the same directory
resumes an interrupted sweep.
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from bench.cells import Cell
from bench.epochs import derived_results, epochs_of, shared_training_groups
from bench.errors import BenchError, SkipCell
from bench.memory import is_out_of_memory
from bench.measure import CellContext, get_measurement
from bench.models import build_model, get_entry
from bench.results import CellResult
from bench.store import RunStore, atomic_write

FINISHED = ("ok", "skipped")

if TYPE_CHECKING:
    from bench.executors import Executor


class Progress(Protocol):
    """What the runner tells its caller (the CLI draws a progress bar from it)."""

    def cell_started(self, cell: Cell, index: int, total: int) -> None: ...

    def cell_finished(self, result: CellResult, reused: bool) -> None: ...

    def notice(self, message: str) -> None: ...


class _Silent:
    def cell_started(self, cell: Cell, index: int, total: int) -> None:
        pass

    def cell_finished(self, result: CellResult, reused: bool) -> None:
        pass

    def notice(self, message: str) -> None:
        pass


@dataclass
class RunSummary:
    results: list[CellResult] = field(default_factory=list)
    reused: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (cell id, problem) of unreadable cell files

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")


def seed_everything(seed: int) -> None:
    """One seed drives python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _reason(exc: BaseException) -> str:
    """One line for the results table: bench's own errors as they read, others with their type."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if is_out_of_memory(exc):
        return f"out of memory ({text or type(exc).__name__}) — lower the batch size or resolution"
    if isinstance(exc, BenchError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _forget_frames(exc: BaseException) -> None:
    """Drop the frames an exception keeps (they hold the model, its activations and optimizer state), so
    that a failed cell's memory can be released even if the exception object lives on somewhere."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
            exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def release_memory(device: torch.device) -> None:
    """After a cell (and above all after an out-of-memory one): collect the cell's objects and hand the
    cached GPU blocks back, so the next cell starts from an empty device."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_cell(cell: Cell, device: torch.device, *, base_dir: Path | None = None, artifact_dir: Path | None = None,
             epoch_taps: dict[int, Path | None] | None = None, tap_results: dict[int, dict[str, Any]] | None = None) -> CellResult:
    """Build the cell's model and take each of its measurements; never raises for a cell's own fault
    (KeyboardInterrupt and SystemExit do pass through). `epoch_taps`/`tap_results`: see bench.epochs."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    measurements: dict[str, dict[str, Any]] = {}
    result = CellResult(cell=cell, status="ok", started_at=started, measurements=measurements)
    cudnn_before = torch.backends.cudnn.benchmark
    if cell.cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = cell.cudnn_benchmark
    try:
        _measure_cell(cell, device, result, base_dir, artifact_dir, epoch_taps or {}, tap_results if tap_results is not None else {})
    finally:
        torch.backends.cudnn.benchmark = cudnn_before
        release_memory(device)  # the model, its optimizer and activations are unreachable by now
    result.duration_s = time.perf_counter() - t0
    result.isolation = "none"
    return result


def _measure_cell(cell: Cell, device: torch.device, result: CellResult, base_dir: Path | None, artifact_dir: Path | None,
                  epoch_taps: dict[int, Path | None], tap_results: dict[int, dict[str, Any]]) -> None:
    # Everything that holds the model lives in this frame, so it is freed when this returns (or raises).
    measurements = result.measurements
    try:
        seed_everything(cell.seed)
        entry = get_entry(cell.model)
        model = build_model(
            cell.model,
            num_classes=cell.num_classes,
            resolution=cell.resolution,
            weights=cell.weights,
            **cell.model_kwargs,
        ).to(device)
    except Exception as exc:  # building the model failed
        result.status, result.reason = "failed", f"build: {_reason(exc)}"
        result.traceback = traceback.format_exc()
        _forget_frames(exc)
        return
    for name in cell.measure:
        ctx = CellContext(
            cell=cell, model=model, device=device, entry=entry, base_dir=base_dir or Path.cwd(), artifact_dir=artifact_dir,
            epoch_taps=epoch_taps if name == "train" else {}, tap_results=tap_results,
        )
        try:
            data = get_measurement(name)(cell.settings.get(name)).measure(ctx)
            measurements[name] = {"status": "ok", **data}
        except SkipCell as exc:
            measurements[name] = {"status": "skipped", "reason": str(exc)}
            if result.status == "ok":
                result.status, result.reason = "skipped", f"{name}: {exc}"
        except Exception as exc:  # recorded as this cell's failure; the sweep goes on
            measurements[name] = {"status": "failed", "reason": _reason(exc)}
            result.traceback = (result.traceback or "") + traceback.format_exc()
            if result.status != "failed":
                result.status, result.reason = "failed", f"{name}: {_reason(exc)}"
            _forget_frames(exc)
        finally:
            del ctx
            try:
                model.to(memory_format=torch.contiguous_format)
            except Exception:  # noqa: BLE001 - a model left unusable by its failure is not the next one's problem
                pass


def attach_mfu(result: CellResult, device: torch.device) -> None:
    """Model FLOP utilisation (bench.devices) into the cell's `speed` and `train` measurements: `mfu` (a
    fraction of the device's dense peak at the cell's precision, or None), `mfu_reason` when None,
    `achieved_tflop_s`, `peak_tflop_s`, `peak_precision`, `mfu_flops_per_image`. Inference uses the forward
    FLOPs (2 x MACs) per image x img/s; training the forward + backward FLOPs per image x train img/s."""
    from bench.devices import cell_mfu, device_name

    try:
        name = device_name(device)
    except Exception:  # noqa: BLE001 - no name, no match: MFU None with the reason below
        name = None
    for kind, data in cell_mfu(result.measurements, result.cell.precision, name).items():
        target = result.measurements["speed" if kind == "inference" else "train"]
        target.update({
            "mfu": data["mfu"],
            "mfu_reason": data["reason"],
            "achieved_tflop_s": data["achieved_tflop_s"],
            "peak_tflop_s": data["peak_tflop_s"],
            "peak_precision": data["peak_precision"],
            "mfu_flops_per_image": data["flops_per_image"],
            "mfu_device": name,
        })


def run_epoch_sweep(group: list[Cell], device: torch.device, *, base_dir: Path | None, artifact_dir) -> list[CellResult]:
    """Cells that differ only in epochs (bench.epochs): train the longest once, read the others off its
    run. Returns every cell's result, the shorter ones first. `artifact_dir(cell_id)` names each cell's folder."""
    trained = group[-1]
    taps = {epochs_of(c): artifact_dir(c.id) for c in group[:-1]}
    tap_results: dict[int, dict[str, Any]] = {}
    result = run_cell(trained, device, base_dir=base_dir, artifact_dir=artifact_dir(trained.id), epoch_taps=taps, tap_results=tap_results)
    return [*derived_results(group, result, tap_results), result]


def run_cells(
    cells: list[Cell],
    store: RunStore,
    device: torch.device,
    progress: Progress | None = None,
    *,
    base_dir: Path | None = None,
    isolation: str = "auto",
    memory_limit_mb: int | None = None,
    executor: "Executor | None" = None,
) -> RunSummary:
    """Run every cell not already finished in `store`; write each result and results.csv as it lands.

    `executor` (bench.executors) says where the cells run; by default a `LocalExecutor` with `isolation`:
    `auto` (a fresh child process for each cell that measures speed), `process` (every cell), `none` (all
    in this process), `memory_limit_mb` capping a child's memory (see bench.isolation).
    The run directory is locked for the whole sweep: a second writer is refused with an input error."""
    from bench.executors import LocalExecutor

    if executor is None:
        executor = LocalExecutor(isolation, memory_limit_mb)  # an unknown mode fails before anything runs
    with store.lock():
        return _run_locked(cells, store, device, progress or _Silent(), base_dir, executor)


def _run_locked(cells: list[Cell], store: RunStore, device: torch.device, progress: Progress, base_dir: Path | None,
                executor: "Executor") -> RunSummary:
    """The sweep, whatever runs it: skip finished cells, group epoch sweeps into one unit, hand the units to
    the executor, and write each result (then results.csv) as it comes back, in whatever order."""
    from bench.executors import Job, Unit

    summary = RunSummary()
    store.write_plan(cells)
    done: dict[str, CellResult] = {}
    for cell in cells:
        previous, problem = store.read_cell_checked(cell.id)
        if problem is not None:  # half-written or corrupted: that cell is run again
            summary.corrupt.append((cell.id, problem))
            progress.notice(f"cell {cell.id}: {problem}; running it again")
        if previous is not None and previous.status in FINISHED:
            done[cell.id] = previous
    sweeps = {c.id: group for group in shared_training_groups(cells) for c in group}
    units: list[Unit] = []
    queued: set[str] = set()
    for index, cell in enumerate(cells):
        if cell.id in done:
            summary.reused += 1
            progress.cell_finished(done[cell.id], reused=True)
            continue
        if cell.id in queued:
            continue
        group = [c for c in sweeps.get(cell.id, []) if c.id not in done]
        unit = tuple(group) if len(group) > 1 else (cell,)  # an epoch sweep: one training run serves every cell of the group still to run
        queued.update(c.id for c in unit)
        units.append(Unit(cells=unit, index=index))

    def write_artifact(cell_id: str, name: str, content: bytes) -> None:
        atomic_write(store.artifact_dir(cell_id) / name, lambda fh: fh.write(content), binary=True)

    job = Job(device=device, base_dir=base_dir, artifact_dir=store.artifact_dir, total=len(cells), write_artifact=write_artifact)
    with contextlib.closing(executor.run(units, job, progress)) as finished:  # closed at once on any error: work still out is dropped
        for results in finished:
            for result in results:
                if result.executor is None:
                    result.executor = executor.name
                attach_mfu(result, device)
                store.write_cell(result)
                done[result.id] = result
                store.write_csv(done[c.id] for c in cells if c.id in done)
                progress.cell_finished(result, reused=False)
    summary.results = [done[c.id] for c in cells]
    store.write_csv(summary.results)
    return summary
