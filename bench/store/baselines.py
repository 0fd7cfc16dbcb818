"""Baselines: a run's results copied into `results/baselines/NAME/`, small enough to commit.

A baseline keeps what comparisons and reports read (cell JSONs with their raw timing samples,
results.csv and the tidy curves.csv and per_class.csv with their Parquet copies, env.json, the suite) and leaves
out checkpoints; predictions are kept (they are small
and let a report recompute the noise of a macro-F1 difference).

Saved from several runs of the same suite (`bench baseline save RUN1 RUN2 RUN3 --name nightly`), the first
is the reference and the others' cell JSONs go to `repeats/<k>/cells/`: `bench compare` then judges each
metric against the median of the runs and their spread (see bench.gate.regression).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from bench.core.errors import InputError
from bench.core.files import atomic_write_json
from bench.store.run_store import RunStore
from bench.store.tidy import CURVES_FILE, PER_CLASS_FILE

BASELINES_ROOT = Path("results") / "baselines"
_TIDY = ("results.csv", CURVES_FILE, PER_CLASS_FILE)  # and their Parquet copies (bench.store.tidy), where written
_KEEP = (
    "env.json",
    "suite.yaml",
    "suite.resolved.json",
    "plan.json",
    "summary.csv",
    *_TIDY,
    *(str(Path(name).with_suffix(".parquet")) for name in _TIDY),
)


def save_baseline(
    run_dir: str | Path, name: str, root: str | Path = BASELINES_ROOT, repeat_dirs: Sequence[str | Path] = ()
) -> Path:
    run_dir = Path(run_dir)
    results = RunStore(run_dir).read_cells()  # raises InputError for a folder that is not a run
    ids = {r.id for r in results}
    repeats = []
    for d in map(Path, repeat_dirs):
        rep = RunStore(d).read_cells()
        if not ids & {r.id for r in rep}:
            raise InputError(
                "this run shares no cell with the first run given",
                file=d,
                hint="a baseline's repeats must be runs of the same suite and profile",
            )
        repeats.append((d, rep))
    if not results:
        raise InputError("no cell results in this run directory", file=run_dir, hint="run the suite first")
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"bad baseline name {name!r}", field="--name", hint="a plain folder name, e.g. nightly")
    target = Path(root) / name
    staging = Path(root) / f".{name}.saving"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "cells").mkdir(parents=True)
    for item in _KEEP:
        if (run_dir / item).is_file():
            shutil.copy2(run_dir / item, staging / item)
    for r in results:
        shutil.copy2(run_dir / "cells" / f"{r.id}.json", staging / "cells" / f"{r.id}.json")
        preds = run_dir / "cells" / r.id / "predictions.csv"
        if preds.is_file():
            (staging / "cells" / r.id).mkdir(exist_ok=True)
            shutil.copy2(preds, staging / "cells" / r.id / "predictions.csv")
    for k, (d, rep) in enumerate(repeats, start=1):
        (staging / "repeats" / str(k) / "cells").mkdir(parents=True)
        for item in ("env.json", "plan.json"):
            if (d / item).is_file():
                shutil.copy2(d / item, staging / "repeats" / str(k) / item)
        for r in rep:
            shutil.copy2(d / "cells" / f"{r.id}.json", staging / "repeats" / str(k) / "cells" / f"{r.id}.json")
    atomic_write_json(
        staging / "baseline.json",
        {
            "name": name,
            "source": str(run_dir),
            "repeats": [str(d) for d, _ in repeats],
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cells": len(results),
        },
    )
    # swap in whole: a reader sees the old baseline or the new one
    if target.exists():
        old = Path(root) / f".{name}.old"
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    return target


def load_repeats(baseline_dir: str | Path) -> list[list]:
    """The CellResults of a baseline's further runs (none for a plain run directory)."""
    folder = Path(baseline_dir) / "repeats"
    if not folder.is_dir():
        return []
    return [RunStore(d).read_cells() for d in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)]


def resolve_run_or_baseline(value: str | Path, root: str | Path = BASELINES_ROOT) -> Path:
    """A run directory, or the name of a saved baseline."""
    path = Path(value)
    if path.is_dir():
        return path
    named = Path(root) / str(value)
    if named.is_dir():
        return named
    raise InputError("no such run directory or baseline", file=path, hint=f"pass a run folder or a name under {root}/")
