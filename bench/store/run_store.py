"""The results store: one folder per run, every write atomic.

Layout of `results/<suite>/<run-id>/`:
- `suite.resolved.json`: the suite as run (profile applied); `suite.yaml`: the file as written;
- `env.json`: versions, CPU/GPU, git commit, seeds, of the latest start or resume; `env-history/NN.json`: the
  same for every start and resume, numbered, never overwritten;
- `fingerprint.json`: what the run runs (its plan, its data sources' identity, threads, versions): a resume
  that would run something else is refused (bench.execution.integrity);
- `plan.json`: the ordered cell ids of the run;
- `cells/<cell-id>.json`: one per finished cell (config, measurements, status, reason);
- `results.csv`: one flat row per cell, rewritten after each cell.
- `curves.csv`, `per_class.csv` (and Parquet copies): tidy tables beside it (bench.store.tidy).

A file is written to a temporary name in the same folder, flushed, fsynced and renamed over the target,
and the folder is fsynced, so a reader (or a resumed run) sees either the old complete file or the new
complete one. The lock (`.lock`) is the first thing a run takes and the last it releases: every file of a run
is written under it. A new run directory is created with one `mkdir` that fails if the name exists, so two
runs started in the same second never share one. Reports and comparisons read the cells of the current
plan only: cells a resume with `--force-resume` left behind are not read.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.core.cell import Cell
from bench.core.errors import InputError
from bench.core.files import atomic_write_json, atomic_write_text
from bench.core.result import CellResult
from bench.store import tidy


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S")


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.cells_dir = self.run_dir / "cells"
        self._lock_fd: int | None = None
        self._lock_depth = 0

    @classmethod
    def create(cls, run_dir: str | Path) -> RunStore:
        """Open `run_dir` for writing (created with its `cells/` if needed; an existing one is resumed). No file
        is written in it: the first file of a run is its lock (`acquire`), which also says when the place is not writable."""
        store = cls(run_dir)
        try:
            store.cells_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _not_writable(store.run_dir, exc) from None
        return store

    @classmethod
    def new_in(cls, root: str | Path, suite_name: str, *, now: datetime | None = None) -> RunStore:
        """A new run directory `root/suite/<run-id>`, created atomically: `mkdir` fails when the name exists
        (another run took it, in this second or before), and the next name (`<run-id>-2`, ...) is tried."""
        base = Path(root) / suite_name
        run_id = new_run_id(now)
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _not_writable(base, exc) from None
        for n in range(1, 10_000):
            candidate = base / (run_id if n == 1 else f"{run_id}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise _not_writable(candidate, exc) from None
            return cls(candidate)
        raise InputError("no free run directory name", file=base, hint="pass --out with a new folder")

    # -- one writer at a time ------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        """Whether this store holds its run directory's lock."""
        return self._lock_fd is not None

    def acquire(self) -> None:
        """Take the run directory's write lock (an flock on `.lock`; reentrant for this store), released by
        `release` or however the process ends, SIGKILL included, because the kernel drops it with the file
        descriptor. A second writer gets an input error naming the holder, having written nothing. Stale
        temporary files of a killed writer are removed."""
        if self._lock_fd is not None:
            self._lock_depth += 1
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _not_writable(self.run_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(
                f"another bench run (pid {holder}) is writing this run directory",
                file=self.run_dir,
                hint="wait for it to finish, or run into another --out folder",
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self.remove_stale_temp_files()
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd, self._lock_depth = fd, 1

    def release(self) -> None:
        """Give the lock back (the outermost `release` of a reentrant hold does)."""
        if self._lock_fd is None:
            return
        self._lock_depth -= 1
        if self._lock_depth == 0:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    @contextlib.contextmanager
    def lock(self):
        """Hold the lock for a block (`acquire` ... `release`); inside a hold already taken, a no-op."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def remove_stale_temp_files(self) -> list[Path]:
        """Temporary files left by a writer that was killed mid-write, in the run folder, `cells/` and each
        cell's own folder (where a half-written checkpoint can be large); call only under the lock."""
        removed = []
        folders = [self.run_dir, self.cells_dir]
        if self.cells_dir.is_dir():
            folders += [p for p in self.cells_dir.iterdir() if p.is_dir()]
        for folder in folders:
            for path in folder.glob(".*.tmp") if folder.is_dir() else []:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # -- writing --------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> None:
        atomic_write_json(self.run_dir / name, data)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.run_dir / name, text)

    def write_cell(self, result: CellResult) -> None:
        atomic_write_json(self.cells_dir / f"{result.id}.json", result.to_dict())

    def write_csv(self, results: Iterable[CellResult]) -> Path:
        """results.csv: one flat row per cell; beside it the tidy curves.csv and per_class.csv (bench.store.tidy)."""
        results = list(results)
        path = self.write_rows_csv("results.csv", [r.flat_row() for r in results])
        self.write_rows_csv(tidy.CURVES_FILE, tidy.curve_rows(results), columns=tidy.CURVE_COLUMNS)
        self.write_rows_csv(tidy.PER_CLASS_FILE, tidy.per_class_rows(results), columns=tidy.PER_CLASS_COLUMNS)
        tidy.write_parquet(self.run_dir, results)
        return path

    def write_rows_csv(self, name: str, rows: list[dict[str, Any]], columns: Iterable[str] = ()) -> Path:
        """A CSV of dict rows; the columns are `columns`, then the rest of the rows' keys in first-seen order."""
        names = list(columns)
        for row in rows:
            names.extend(k for k in row if k not in names)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        path = self.run_dir / name
        atomic_write_text(path, buf.getvalue())
        return path

    # -- reading --------------------------------------------------------------------------------
    def read_json(self, name: str) -> Any:
        return json.loads((self.run_dir / name).read_text(encoding="utf-8"))

    def read_cell(self, cell_id: str) -> CellResult | None:
        """The stored result of a cell, or None when absent or unreadable (then it is rerun)."""
        return self.read_cell_checked(cell_id)[0]

    def read_cell_checked(self, cell_id: str) -> tuple[CellResult | None, str | None]:
        """(result, None), (None, None) when there is no file, or (None, problem) when the file exists
        but is not a complete cell result of that id (truncated, corrupted, edited, another cell's)."""
        path = self.cells_dir / f"{cell_id}.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"unreadable cell file ({exc})"
        try:
            data = json.loads(text)
            result = CellResult.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return None, f"corrupt cell file {path.name} ({type(exc).__name__}: {str(exc)[:120]})"
        if result.id != cell_id:
            return None, f"cell file {path.name} holds cell {result.id}"
        return result, None

    def read_cells(self) -> list[CellResult]:
        """The stored cells of the run's plan, in plan order; without a plan (a folder of cell files), all.
        A cell left by an earlier plan (a resume with --force-resume) is not read: reports and comparisons
        see only what the current plan ran."""
        if not self.run_dir.is_dir():
            raise InputError("no such run directory", file=self.run_dir, hint="pass a folder written by `bench run`")
        found = {p.stem for p in self.cells_dir.glob("*.json")} if self.cells_dir.is_dir() else set()
        if (self.run_dir / "plan.json").is_file():
            ids = [i for i in self.read_json("plan.json").get("cell_ids", []) if i in found]
        else:
            ids = sorted(found)
        results = [r for r in (self.read_cell(i) for i in ids) if r is not None]
        return results

    def artifact_dir(self, cell_id: str) -> Path:
        """The folder for a cell's own files (checkpoint, predictions); created by whoever writes."""
        return self.cells_dir / cell_id

    def write_plan(self, cells: list[Cell]) -> None:
        self.write_json("plan.json", {"cell_ids": [c.id for c in cells], "cells": [c.to_dict() for c in cells]})

    def write_env(self, env: dict[str, Any]) -> Path:
        """env.json (this start's or resume's environment) and a numbered copy in env-history/ that no later
        start overwrites: `01.json` is the first start, each resume the next number. Returns the copy's path."""
        history = self.run_dir / ENV_HISTORY
        taken = [int(p.stem) for p in history.glob("*.json") if p.stem.isdigit()] if history.is_dir() else []
        path = history / f"{max(taken, default=0) + 1:02d}.json"
        atomic_write_json(path, env)
        self.write_json("env.json", env)
        return path

    def env_history(self) -> list[dict[str, Any]]:
        """Every start's and resume's environment, oldest first (empty for a run written before the history)."""
        history = self.run_dir / ENV_HISTORY
        paths = sorted((p for p in history.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))
        return [json.loads(p.read_text(encoding="utf-8")) for p in paths] if history.is_dir() else []


ENV_HISTORY = "env-history"


def _not_writable(path: Path, exc: OSError) -> InputError:
    return InputError(
        f"results directory is not writable ({exc.strerror or exc})",
        file=path,
        hint="pass --out with a folder you can write to",
    )
