"""Executors: where and how the runner's cells run. `local` (the default) runs them here, one after the
other, in this process or in fresh child processes (bench.execution.isolation); `ray` runs each as a Ray task on a
cluster, several at once.

Why a separate layer: what a sweep *means* (which cells are already finished and skipped, which form an
epoch sweep trained once, writing each result and results.csv atomically as it lands, the lock on the run
directory) must not depend on where the cells run, so it lives once, in `bench.execution.sweep._run_locked`. An
executor only turns *units* of work into results: it is handed the units still to run and yields each
unit's results as they finish, in any order. A unit is one cell, or an epoch-sweep group (bench.execution.epochs),
which must run as one training run and so is never split across workers.

The Ray executor ships each unit to a worker as plain data (`Cell.to_dict`) and gets plain data back
(`CellResult.to_dict`, plus the bytes of the cell's files: checkpoint, predictions); the worker runs
`bench.execution.sweep.run_cell` exactly as the local path does. Only the driver writes the run directory, through
the same `RunStore`, so resume, atomic writes and the lock are unchanged, and a cluster needs no shared
filesystem for the results. A worker lost mid-cell (killed, out of memory, its node gone) makes Ray run the
task again (`max_retries`); the retry count is recorded on the result, and a cell whose every attempt died
is a failed cell like any other, so the sweep goes on.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.core.cell import Cell
from bench.core.errors import InputError, did_you_mean
from bench.core.result import CellResult
from bench.execution.cell import run_cell
from bench.execution.epochs import derived_results, epochs_of
from bench.execution.isolation import run_cell_isolated, shared_server, uses_process
from bench.measure.registry import plugin_modules
from bench.platform.allocator import PINNED, apply_in_process
from bench.suite.schema import EXECUTORS, ISOLATION_MODES


@dataclass(frozen=True)
class Unit:
    """What an executor runs at once: one cell, or an epoch-sweep group sorted by epochs (the last cell is
    trained, the others are read off its run). `index` is the position of its first cell in the plan."""

    cells: tuple[Cell, ...]
    index: int

    @property
    def trained(self) -> Cell:
        return self.cells[-1]


@dataclass
class Job:
    """What every unit of a sweep shares."""

    device: torch.device
    base_dir: Path | None
    artifact_dir: Callable[[str], Path]  # cell id -> the folder of its files in the run directory
    total: int  # cells in the plan, for progress
    write_artifact: Callable[[str, str, bytes], None] | None = (
        None  # (cell id, file name, content): executors whose workers cannot write the run directory
    )


def run_epoch_sweep(
    group: list[Cell], device: torch.device, *, base_dir: Path | None, artifact_dir
) -> list[CellResult]:
    """Cells that differ only in epochs (bench.execution.epochs): train the longest once, read the others off its
    run. Returns every cell's result, the shorter ones first. `artifact_dir(cell_id)` names each cell's folder."""
    trained = group[-1]
    taps = {epochs_of(c): artifact_dir(c.id) for c in group[:-1]}
    tap_results: dict[int, dict[str, Any]] = {}
    result = run_cell(
        trained,
        device,
        base_dir=base_dir,
        artifact_dir=artifact_dir(trained.id),
        epoch_taps=taps,
        tap_results=tap_results,
    )
    return [*derived_results(group, result, tap_results), result]


class Executor(ABC):
    """Runs units of cells; the runner writes what it yields."""

    name: str = "?"

    @abstractmethod
    def run(self, units: list[Unit], job: Job, progress: Any) -> Generator[list[CellResult], None, None]:
        """Yield each unit's results (every cell of the unit, the trained one last) as the unit finishes.
        Never raises for a cell's own fault; KeyboardInterrupt passes through (and ends the unit's work)."""

    def describe(self) -> dict[str, Any]:
        """What env.json records about how the run was executed."""
        return {"name": self.name}


def in_process_allocator(setting: str, cell: Cell) -> None:
    """Before a cell runs in the runner's own process: pin its heap (mallopt, bench.platform.allocator) when the
    setting is `pinned` and the cell measures speed. A cell that only trains leaves the runner as it is: pinning
    did not speed training up here, and a never-trimmed heap would keep a long run's peak (docs/measurements.md).
    `default` and a preloaded library cannot be applied to a running process (the fork server's children get them)."""
    if setting == PINNED and "speed" in cell.measure:
        apply_in_process(setting)


class LocalExecutor(Executor):
    """Today's loop: units one after the other on this machine. An epoch sweep trains in this process;
    a single cell runs in a fresh child process when `isolation` says so (bench.execution.isolation), else here."""

    name = "local"

    def __init__(
        self, isolation: str = "auto", memory_limit_mb: int | None = None, allocator: str | None = None
    ) -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"unknown isolation mode {isolation!r} (use {', '.join(ISOLATION_MODES)})")
        self.isolation, self.memory_limit_mb = isolation, memory_limit_mb
        self.allocator = allocator  # bench.platform.allocator's setting; None: leave every process as it is

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "isolation": self.isolation,
            "memory_limit_mb": self.memory_limit_mb,
            "allocator": self.allocator,
        }

    def run(self, units: list[Unit], job: Job, progress: Any) -> Generator[list[CellResult], None, None]:
        for unit in units:
            progress.cell_started(unit.trained, unit.index, job.total)
            if self.allocator and not uses_process(self.isolation, unit.trained):
                in_process_allocator(self.allocator, unit.trained)
            if len(unit.cells) > 1:
                yield run_epoch_sweep(
                    list(unit.cells), job.device, base_dir=job.base_dir, artifact_dir=job.artifact_dir
                )
            elif uses_process(self.isolation, unit.trained):
                yield [
                    run_cell_isolated(
                        unit.trained,
                        job.device,
                        base_dir=job.base_dir,
                        artifact_dir=job.artifact_dir(unit.trained.id),
                        memory_limit_mb=self.memory_limit_mb,
                        server=shared_server(self.allocator),
                    )
                ]
            else:
                yield [
                    run_cell(
                        unit.trained, job.device, base_dir=job.base_dir, artifact_dir=job.artifact_dir(unit.trained.id)
                    )
                ]


# -- Ray ---------------------------------------------------------------------------------------------------

RAY_MISSING = 'the ray executor needs Ray, which is not installed: pip install "bench[ray]" (or pip install ray)'


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING, field="executor", hint="or run with --executor local") from None
    return ray


def _attempt_number() -> int | None:
    """Which attempt of its Ray task this is (0: the first; n: the n-th retry), from Ray's core worker."""
    try:
        import ray._private.worker as ray_worker

        worker = ray_worker.global_worker
        # ray sets Worker.core_worker at connect time, so its annotations do not know it
        return int(worker.core_worker.get_current_task_attempt_number())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an internal API; without it the retries are not known, nothing else changes
        return None


def run_unit_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Runs in the Ray worker: one unit, given and returned as plain data. The cells' files are written
    into a private temporary folder and returned as bytes, for the driver to write into the run directory."""
    for path in payload[
        "sys_path"
    ]:  # modules beside bench (a plugin's measurement, a test's) where this worker can see them
        if path not in sys.path and Path(path).is_dir():
            sys.path.append(path)
    os.environ.update(payload["env"])
    import importlib

    for module in payload["plugins"]:
        importlib.import_module(module)
    torch.set_num_threads(payload["threads"])
    cells = [Cell.from_dict(c) for c in payload["cells"]]
    if payload.get("allocator"):
        in_process_allocator(payload["allocator"], cells[-1])
    device = torch.device(payload["device"])
    base_dir = Path(payload["base_dir"]) if payload["base_dir"] else None
    folder = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:

        def artifact_dir(cell_id: str) -> Path:
            return folder / cell_id

        if len(cells) > 1:
            results = run_epoch_sweep(cells, device, base_dir=base_dir, artifact_dir=artifact_dir)
        else:
            results = [run_cell(cells[0], device, base_dir=base_dir, artifact_dir=artifact_dir(cells[0].id))]
        artifacts = {
            c.id: {p.name: p.read_bytes() for p in sorted(artifact_dir(c.id).iterdir()) if p.is_file()}
            for c in cells
            if artifact_dir(c.id).is_dir()
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    import socket

    return {
        "results": [r.to_dict() for r in results],
        "artifacts": artifacts,
        "attempt": _attempt_number(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
    }


class RayExecutor(Executor):
    """Each unit is a Ray task with the resources of one cell (`num_cpus_per_cell`, `num_gpus_per_cell`),
    so the cluster runs as many at once as it has room for. Connects to `address` (`auto`, `ray://host:10001`,
    or None: a local cluster started for the sweep and stopped after); an already connected process (a test,
    a notebook) is used as it is. Lost workers are retried by Ray itself (`max_retries`); an exception inside
    a cell is not retried (it is the cell's own failure, recorded as such, as the local path does).

    The worker's torch thread count is fixed (`torch_threads`, default: the cell's CPUs), since results
    such as macro-F1 are bit-identical only at the same thread count. A cell that isolation would put in a
    fresh process (`isolation: auto` and a cell measuring speed, or `process`) runs in a Ray worker that
    serves that one task and exits (`max_calls=1`), so no earlier cell's state skews its timings."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_cell: float = 1,
        num_gpus_per_cell: float | None = None,
        max_retries: int = 3,
        torch_threads: int | None = None,
        isolation: str = "auto",
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"unknown isolation mode {isolation!r} (use {', '.join(ISOLATION_MODES)})")
        self.address, self.num_cpus_per_cell, self.num_gpus_per_cell = address, num_cpus_per_cell, num_gpus_per_cell
        self.max_retries, self.isolation = max_retries, isolation
        self.torch_threads = torch_threads or max(1, int(num_cpus_per_cell))
        self.init_options = init_options or {}
        self._remotes: dict[bool, Any] = {}
        self.allocator: str | None = None  # pinned: a worker pins its heap (mallopt) before a cell that measures speed

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "address": self.address or "local",
            "num_cpus_per_cell": self.num_cpus_per_cell,
            "num_gpus_per_cell": self.num_gpus_per_cell,
            "max_retries": self.max_retries,
            "torch_threads": self.torch_threads,
            "isolation": self.isolation,
            "allocator": self.allocator,
        }
        try:
            import ray

            info["ray"] = ray.__version__
        except ImportError:
            info["ray"] = None
        return info

    def _gpus(self, device: torch.device) -> float:
        if self.num_gpus_per_cell is not None:
            return self.num_gpus_per_cell
        return 1 if device.type == "cuda" else 0

    def _connect(self, ray) -> bool:
        """Connect to the cluster; True when this call started it (and so must shut it down)."""
        if ray.is_initialized():
            return False
        ray.init(address=self.address, **{"include_dashboard": False, "log_to_driver": True, **self.init_options})
        return True

    def _remote(self, ray, fresh: bool):
        if fresh not in self._remotes:
            remote = ray.remote(max_calls=1) if fresh else ray.remote
            self._remotes[fresh] = remote(run_unit_payload)
        return self._remotes[fresh]

    def _payload(self, unit: Unit, job: Job) -> dict[str, Any]:
        gpus = self._gpus(job.device)
        device = (
            "cuda" if gpus > 0 else str(job.device)
        )  # Ray gives the task its GPUs as cuda:0.. (CUDA_VISIBLE_DEVICES)
        return {
            "cells": [c.to_dict() for c in unit.cells],
            "device": device,
            "base_dir": str(job.base_dir) if job.base_dir else None,
            "threads": self.torch_threads,
            "plugins": plugin_modules(),
            "sys_path": [p for p in sys.path if p],
            "env": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")},
            "allocator": self.allocator,
        }

    def run(self, units: list[Unit], job: Job, progress: Any) -> Generator[list[CellResult], None, None]:
        if not units:
            return
        ray = _import_ray()
        owns = self._connect(ray)
        pending: dict[Any, tuple[Unit, bool, str, float]] = {}
        try:
            for unit in units:
                fresh = len(unit.cells) == 1 and uses_process(
                    self.isolation, unit.trained
                )  # an epoch sweep trains in one worker, as locally
                task = self._remote(ray, fresh).options(
                    num_cpus=self.num_cpus_per_cell,
                    num_gpus=self._gpus(job.device),
                    max_retries=self.max_retries,
                    retry_exceptions=False,
                    name=f"bench-cell-{unit.trained.id}",
                )
                started = datetime.now(timezone.utc).isoformat(timespec="seconds")
                pending[task.remote(self._payload(unit, job))] = (unit, fresh, started, time.perf_counter())
                progress.cell_started(unit.trained, unit.index, job.total)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    unit, fresh, started, t0 = pending.pop(ref)
                    yield self._collect(ray, ref, unit, job, started, t0, fresh)
        finally:  # Ctrl-C, an error writing a result, or the runner stopped: the cluster drops the rest
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass
            if owns:
                ray.shutdown()

    def _collect(self, ray, ref, unit: Unit, job: Job, started: str, t0: float, fresh: bool) -> list[CellResult]:
        try:
            out = ray.get(ref)
        except (
            ray.exceptions.RayError
        ) as exc:  # every attempt died (worker crash, out of memory, node lost), or the task errored outside a cell
            cause = getattr(
                exc, "cause", None
            )  # RayTaskError: the exception the task raised outside a cell (e.g. a plugin's import)
            shown = cause if isinstance(cause, BaseException) else exc
            text = str(shown).strip().splitlines()
            reason = f"ray: {type(shown).__name__}: {text[0][:300] if text else ''}".rstrip(": ")
            if isinstance(
                exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError)
            ):
                reason = f"ray worker lost on every attempt ({self.max_retries + 1}): {reason}"
            return [
                CellResult(
                    cell=cell,
                    status="failed",
                    reason=reason,
                    started_at=started,
                    traceback=str(exc)[-4000:],
                    duration_s=time.perf_counter() - t0,
                    isolation="process" if fresh else "none",
                    executor="ray",
                    retries=self.max_retries if "lost on every" in reason else None,
                )
                for cell in unit.cells
            ]
        own = {c.id for c in unit.cells}
        for cell_id, files in out["artifacts"].items():
            for name, content in files.items():
                assert job.write_artifact is not None, "the ray executor's workers send files back to the driver"
                job.write_artifact(*checked_artifact(cell_id, name, own), content)
        results = [CellResult.from_dict(d) for d in out["results"]]
        for result in results:
            result.executor = "ray"
            result.retries = out["attempt"]
            if fresh:
                result.isolation = "process"
        return results


def make_executor(
    name: str,
    *,
    isolation: str = "auto",
    memory_limit_mb: int | None = None,
    ray_options: dict[str, Any] | None = None,
    allocator: str | None = None,
) -> Executor:
    """The executor a suite (or `bench run --executor`) asks for; `ray_options` are the suite's `ray:` fields.
    `ray` without Ray installed is an input error that says how to install it."""
    if name == "local":
        return LocalExecutor(isolation, memory_limit_mb, allocator)
    if name == "ray":
        _import_ray()
        ray_executor = RayExecutor(
            isolation=isolation, **{k: v for k, v in (ray_options or {}).items() if v is not None}
        )
        ray_executor.allocator = allocator
        return ray_executor
    raise InputError(
        f"unknown executor '{name}'",
        field="executor",
        hint=did_you_mean(name, EXECUTORS) or f"use one of {', '.join(EXECUTORS)}",
    )


def checked_artifact(cell_id: str, name: str, own: set[str]) -> tuple[str, str]:
    """A worker's artifact (cell id, file name), refused unless the cell is one of the task's and the name is a
    plain file name (no separator, not `.` or `..`): what comes back from a worker is never a path to follow."""
    plain = bool(name) and name not in (".", "..") and not any(c in name for c in ("/", "\\", "\0", os.sep))
    if cell_id not in own or not plain:
        raise ValueError(f"refused a worker's artifact {name!r} of cell {cell_id!r} (task cells: {sorted(own)})")
    return cell_id, name
