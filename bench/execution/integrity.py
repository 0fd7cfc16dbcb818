"""A run directory's integrity: what a run runs is recorded, and a resume that would run something else is refused.

`begin_run` is the first thing a run does with its directory: it takes the lock (the last thing the run
gives back), then compares the run's fingerprint with the one the directory recorded, and only then writes:
the suite, `fingerprint.json`, `env.json` and the numbered copy of it in `env-history/`.

A fingerprint is what decides whether cells already in a directory belong to this run: the plan's cell
ids (the resolved suite beside them, to say *what* changed), each data source's identity (its file list
with sizes and modification times, or a generator's id, or the arrays' bytes; bench.measure.train.datacheck),
the torch thread count, and the versions of Python, bench and the libraries that compute the numbers. Cell
ids leave out the data's content and the thread count, so without this check a resume could reuse a cell
computed on other data. A difference is refused with a message naming it, unless `force_resume`: then
the new plan runs there, and reports and comparisons read only its cells (bench.store.run_store).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from bench.core.errors import InputError
from bench.measure.train.datacheck import CheckedSource
from bench.platform.env import installed_version
from bench.store.run_store import RunStore

FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_VERSION = 1
VERSIONED = ("bench", "torch", "torchvision", "timm", "numpy")


def versions() -> dict[str, str | None]:
    """Python's version and the installed versions of bench and the libraries its numbers come from."""
    return {"python": platform.python_version(), **{name: installed_version(name) for name in VERSIONED}}


def fingerprint(
    cells: list, sources: list[CheckedSource], *, threads: int, resolved: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a run runs (see the module's docstring), as plain data for `fingerprint.json`."""
    ids = [c.id for c in cells]
    return {
        "version": FINGERPRINT_VERSION,
        "plan": {"cells": len(ids), "digest": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]},
        "cell_ids": ids,
        "data": {s.key: s.identity for s in sources},
        "threads": threads,
        "versions": versions(),
        "suite": resolved,
    }


def differences(old: dict[str, Any], new: dict[str, Any], labels: dict[str, str] | None = None) -> list[str]:
    """What differs between two fingerprints, one phrase each ([] when the run is the same)."""
    found: list[str] = []
    old_ids, new_ids = old.get("cell_ids") or [], new.get("cell_ids") or []
    if old_ids != new_ids:
        added, removed = len(set(new_ids) - set(old_ids)), len(set(old_ids) - set(new_ids))
        what = f"{added} cells added, {removed} removed" if added or removed else "the same cells in another order"
        suite = _suite_changes(old.get("suite"), new.get("suite"))
        found.append(f"the plan ({what}{'; suite ' + '; '.join(suite) if suite else ''})")
    old_data, new_data = old.get("data") or {}, new.get("data") or {}
    for key in sorted(set(old_data) | set(new_data)):
        before, after = old_data.get(key), new_data.get(key)
        if before == after:
            continue
        if before is None:
            found.append(f"data source {_describe(after)} is new")
        elif after is None:
            found.append(f"data source {_describe(before)} is no longer used")
        else:
            changed = [f"{k} {before.get(k)} -> {after.get(k)}" for k in after if before.get(k) != after.get(k)]
            found.append(f"data source {_describe(after)} changed ({', '.join(changed)})")
    if "threads" in old and old.get("threads") != new.get("threads"):
        found.append(f"threads {old.get('threads')} -> {new.get('threads')}")
    for name, value in (new.get("versions") or {}).items():
        before = (old.get("versions") or {}).get(name)
        if "versions" in old and before != value:
            found.append(f"{name} {before} -> {value}")
    return found


def _describe(identity: dict[str, Any] | None) -> str:
    return f"'{(identity or {}).get('description', '?')}'"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _suite_changes(old: dict[str, Any] | None, new: dict[str, Any] | None, limit: int = 6) -> list[str]:
    """The resolved suite's fields that differ, as `field: old -> new` (where the cells came from)."""
    if not old or not new:
        return []
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in ("source", "description")]
    shown = [f"{k}: {json.dumps(a.get(k), default=str)} -> {json.dumps(b.get(k), default=str)}" for k in keys[:limit]]
    return shown + ([f"{len(keys) - limit} more fields"] if len(keys) > limit else [])


def recorded(store: RunStore) -> dict[str, Any] | None:
    """The fingerprint a run directory recorded: fingerprint.json, or for a run written before it, its plan's
    cell ids (so a different plan is still refused); None for a directory no run has used."""
    path = store.run_dir / FINGERPRINT_FILE
    if path.is_file():
        return store.read_json(FINGERPRINT_FILE)
    if (store.run_dir / "plan.json").is_file():
        return {"cell_ids": store.read_json("plan.json").get("cell_ids", [])}
    return None


def begin_run(
    store: RunStore,
    *,
    fingerprint_now: dict[str, Any],
    env: dict[str, Any],
    resolved: dict[str, Any] | None = None,
    suite_yaml: str | None = None,
    force_resume: bool = False,
) -> list[str]:
    """Take the run directory's lock (the caller releases it when the run, its report included, is done),
    refuse a resume whose fingerprint differs (unless `force_resume`), then write the suite, the fingerprint
    and this start's environment. Returns the differences a forced resume ran over ([] otherwise).
    Nothing is written in the directory when the lock is held by another run or the resume is refused."""
    store.acquire()
    try:
        before = recorded(store)
        found = differences(before, fingerprint_now) if before is not None else []
        if found and not force_resume:
            raise InputError(
                "this run directory holds a run of something else: " + "; ".join(found),
                file=store.run_dir,
                hint="run into a new --out folder, or pass --force-resume to run this plan there "
                "(its reports then read only this plan's cells)",
            )
        if resolved is not None:
            store.write_json("suite.resolved.json", resolved)
        if suite_yaml is not None:
            store.write_text("suite.yaml", suite_yaml)
        record = dict(fingerprint_now)
        if found:
            record["forced_over"] = [*(before or {}).get("forced_over", []), {"differences": found}]
        store.write_json(FINGERPRINT_FILE, record)
        store.write_env(env)
    except BaseException:
        store.release()
        raise
    return found


def run_directory(out: str | Path | None, results_root: str | Path, name: str) -> RunStore:
    """The run's directory: `out` (created if needed, resumed if it exists) or a new one under
    `results_root/name/`, created atomically (bench.store.run_store.RunStore.new_in)."""
    return RunStore.create(out) if out else RunStore.new_in(results_root, name)
