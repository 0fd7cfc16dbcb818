"""The results store: one folder per run, every write atomic.

Layout of `results/<suite>/<run-id>/`:
- `suite.resolved.json`: the suite as run (profile applied); `suite.yaml`: the file as written;
- `env.json`: versions, CPU/GPU, git commit, seeds;
- `plan.json`: the ordered cell ids of the run;
- `cells/<cell-id>.json`: one per finished cell (config, measurements, status, reason);
- `results.csv`: one flat row per cell, rewritten after each cell.
- `curves.csv`, `per_class.csv` (and Parquet copies): tidy tables beside it (bench.store.tidy).

A file is written to a temporary name in the same folder, flushed, fsynced and renamed over the target,
so a reader (or a resumed run) sees either the old complete file or the new complete one.
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
from bench.store.tidy import write_tidy


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S")


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.cells_dir = self.run_dir / "cells"

    @classmethod
    def create(cls, run_dir: str | Path) -> RunStore:
        """Open `run_dir` for writing (created if needed); an unwritable place is an input error."""
        store = cls(run_dir)
        try:
            store.cells_dir.mkdir(parents=True, exist_ok=True)
            probe = store.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise InputError(
                f"results directory is not writable ({exc.strerror or exc})",
                file=store.run_dir,
                hint="pass --out with a folder you can write to",
            ) from None
        return store

    @classmethod
    def new_in(cls, root: str | Path, suite_name: str) -> RunStore:
        base = Path(root) / suite_name
        run_id = new_run_id()
        candidate, n = base / run_id, 1
        while candidate.exists():
            n += 1
            candidate = base / f"{run_id}-{n}"
        return cls.create(candidate)

    # -- one writer at a time ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Hold the run directory's write lock (an flock on `.lock`), released however the process ends,
        SIGKILL included, because the kernel drops it with the file descriptor. A second writer gets an
        input error naming the holder. Stale temporary files of a killed writer are removed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise InputError(
                    f"another bench run (pid {holder}) is writing this run directory",
                    file=self.run_dir,
                    hint="wait for it to finish, or run into another --out folder",
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self.remove_stale_temp_files()
            yield self
        finally:
            os.close(fd)

    def remove_stale_temp_files(self) -> list[Path]:
        """Temporary files left by a writer that was killed mid-write (call only under the lock)."""
        removed = []
        for folder in (self.run_dir, self.cells_dir):
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
        write_tidy(self, results)
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
        """All stored cells, in plan order when a plan exists."""
        if not self.run_dir.is_dir():
            raise InputError("no such run directory", file=self.run_dir, hint="pass a folder written by `bench run`")
        order: list[str] = []
        if (self.run_dir / "plan.json").is_file():
            order = self.read_json("plan.json").get("cell_ids", [])
        found = {p.stem for p in self.cells_dir.glob("*.json")} if self.cells_dir.is_dir() else set()
        ids = [i for i in order if i in found] + sorted(found - set(order))
        results = [r for r in (self.read_cell(i) for i in ids) if r is not None]
        return results

    def artifact_dir(self, cell_id: str) -> Path:
        """The folder for a cell's own files (checkpoint, predictions); created by whoever writes."""
        return self.cells_dir / cell_id

    def write_plan(self, cells: list[Cell]) -> None:
        self.write_json("plan.json", {"cell_ids": [c.id for c in cells], "cells": [c.to_dict() for c in cells]})
