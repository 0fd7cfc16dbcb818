"""The sweep: a plan's cells run and each result recorded in the run directory as it lands.

The sweep's logic (skip finished cells, train an epoch sweep once, write each result and results.csv as it
lands) is here, once; *where* the cells run is an executor's business (bench.execution.executors: `local`,
one after the other on this machine, the default; `ray`, as tasks on a Ray cluster), and one cell's run is
bench.execution.cell's. A cell already finished in the run directory (same id, status ok or skipped) is
not run again, so rerunning into the same directory resumes an interrupted sweep.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from bench.core.cell import Cell
from bench.core.files import atomic_write
from bench.core.result import CellResult
from bench.execution.cell import attach_mfu
from bench.execution.epochs import shared_training_groups
from bench.execution.executors import Executor, Job, LocalExecutor, Unit
from bench.store.run_store import RunStore

FINISHED = ("ok", "skipped")


class Progress(Protocol):
    """What the runner tells its caller (the CLI draws a progress bar from it)."""

    def cell_started(self, cell: Cell, index: int, total: int) -> None: ...

    def cell_finished(self, result: CellResult, reused: bool) -> None: ...

    def notice(self, message: str) -> None: ...


class SilentProgress:
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


def run_cells(
    cells: list[Cell],
    store: RunStore,
    device: torch.device,
    progress: Progress | None = None,
    *,
    base_dir: Path | None = None,
    isolation: str = "auto",
    memory_limit_mb: int | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Run every cell not already finished in `store`; write each result and results.csv as it lands.

    `executor` (bench.execution.executors) says where the cells run; by default a `LocalExecutor` with `isolation`:
    `auto` (a fresh child process for each cell that measures speed), `process` (every cell), `none` (all
    in this process), `memory_limit_mb` capping a child's memory (see bench.execution.isolation).
    The run directory is locked for the whole sweep: a second writer is refused with an input error."""
    if executor is None:
        executor = LocalExecutor(isolation, memory_limit_mb)  # an unknown mode fails before anything runs
    with store.lock():
        return _run_locked(cells, store, device, progress or SilentProgress(), base_dir, executor)


def _run_locked(
    cells: list[Cell],
    store: RunStore,
    device: torch.device,
    progress: Progress,
    base_dir: Path | None,
    executor: Executor,
) -> RunSummary:
    """The sweep, whatever runs it: skip finished cells, group epoch sweeps into one unit, hand the units to
    the executor, and write each result (then results.csv) as it comes back, in whatever order."""
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
        unit = (
            tuple(group) if len(group) > 1 else (cell,)
        )  # an epoch sweep: one training run serves every cell of the group still to run
        queued.update(c.id for c in unit)
        units.append(Unit(cells=unit, index=index))

    def write_artifact(cell_id: str, name: str, content: bytes) -> None:
        atomic_write(store.artifact_dir(cell_id) / name, lambda fh: fh.write(content), binary=True)

    job = Job(
        device=device,
        base_dir=base_dir,
        artifact_dir=store.artifact_dir,
        total=len(cells),
        write_artifact=write_artifact,
    )
    with contextlib.closing(
        executor.run(units, job, progress)
    ) as finished:  # closed at once on any error: work still out is dropped
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
