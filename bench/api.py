"""bench as a Python library: run a suite, load a run, compare two, and get the results as pandas DataFrames.

```python
import bench
run = bench.run("smoke")                      # or bench.load("results/smoke/20260101-120000")
df = run.to_pandas()                          # one row a cell: the columns of results.csv
run.curves()                                  # per-epoch values, long: id, label, epoch, metric, value
run.per_class()                               # per-class values, long: id, label, class, metric, value
bench.compare("nightly", run).verdict         # 'pass', 'regression' or 'inconclusive'
```

The `bench` command is built on these functions: `bench run` is `prepare` + `execute` with a progress bar,
`bench compare` is `compare`, `bench export` reads a run with `load`. Called from a notebook, `run` draws no console bars; pass
`progress=print` (or any callable taking a `CellProgress`) to follow it. Bad input raises
`bench.core.errors.InputError` (its message names the file and field), a full disk `StorageError`.
Heavy libraries (torch, pandas, the report's matplotlib) are imported when a function needs them, so
`import bench` stays light.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.cell import Cell, canonical_json
from bench.core.errors import InputError, StorageError
from bench.core.files import read_json_object
from bench.core.resources import shipped_dir
from bench.core.result import CellResult, refuse_mixed_evaluation
from bench.measure.catalogue import threshold_option, thresholds_from
from bench.plan.cost import total
from bench.platform.allocator import resolve as resolve_allocator
from bench.store import tidy
from bench.store.baselines import load_repeats, resolve_run_or_baseline
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import find_suite, load_suite

# ./suites (and ./suites/seeds, the founding experiments) first, then the suites bench ships
SUITE_DIRS = [
    Path.cwd() / "suites",
    Path.cwd() / "suites" / "seeds",
    shipped_dir("suites"),
    shipped_dir("suites") / "seeds",
]


# -- a run on disk --------------------------------------------------------------------------------
@dataclass
class Run:
    """One run directory (results/<suite>/<run-id>/) and what was learned while running it."""

    run_dir: Path
    reused: int = 0  # cells kept from an earlier run into the same directory
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (cell id, problem) of cell files run again
    timing: dict[str, Any] | None = None  # measured wall time beside `bench plan`'s estimate (estimates.json)
    report_error: str | None = None  # why the report after the run was not rendered
    report_paths: dict[str, Path] = field(default_factory=dict)  # the report after the run, by format
    _results: list[CellResult] | None = field(default=None, repr=False)

    @property
    def results(self) -> list[CellResult]:
        """The cells' results, in plan order."""
        if self._results is None:
            self._results = RunStore(self.run_dir).read_cells()
        return self._results

    @property
    def name(self) -> str:
        return str(self.suite.get("name") or self.run_dir.parent.name)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def suite(self) -> dict[str, Any]:
        """The suite as run (suite.resolved.json); empty when absent."""
        return read_json_object(self.run_dir / "suite.resolved.json")

    @property
    def env(self) -> dict[str, Any]:
        """The environment it ran in (env.json); empty when absent."""
        return read_json_object(self.run_dir / "env.json")

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def to_pandas(self):
        """One row a cell with the columns of results.csv; numbers as numbers, list columns as lists,
        empty values missing (NaN)."""
        return tidy.frame(tidy.result_rows(self.results))

    def curves(self):
        """Per-epoch values of the training cells, long: id, label, epoch, metric, value (as curves.csv)."""
        return tidy.frame(tidy.curve_rows(self.results), tidy.CURVE_COLUMNS)

    def per_class(self):
        """Per-class values of the training cells, long: id, label, class, metric, value (as per_class.csv)."""
        return tidy.frame(tidy.per_class_rows(self.results), tidy.PER_CLASS_COLUMNS)

    def report(
        self, formats: tuple[str, ...] = ("html", "md"), out: str | Path | None = None, baseline: Any = None
    ) -> dict[str, Path]:
        """Render report.html / report.md (into `out`, default the run directory); with `baseline` (a Run, a
        run directory), the report compares this run with it. Returns the paths by format."""
        from bench.report import render_report  # deferred: imports matplotlib

        dirs = ([_run_dir(baseline)] if baseline is not None else []) + [self.run_dir]
        return render_report(dirs, out, list(formats))

    def __repr__(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("ok", "failed", "skipped") if self.count(s))
        return f"Run({str(self.run_dir)!r}: {len(self.results)} cells, {counts or 'none finished'})"


def load(run_dir: str | Path) -> Run:
    """A run directory written by `bench run` (or a saved baseline)."""
    run = Run(Path(run_dir))
    if not run.results:
        raise InputError(
            "no cell results in this run directory", file=run.run_dir, hint="pass a folder written by `bench run`"
        )
    return run


def _run_dir(run: Any) -> Path:
    return run.run_dir if isinstance(run, Run) else Path(run)


# -- progress -------------------------------------------------------------------------------------
@dataclass
class CellProgress:
    """What `run(progress=...)` is called with: a cell started or finished, or a notice."""

    event: str  # "started", "finished" or "notice"
    done: int
    total: int
    cell_id: str = ""
    label: str = ""
    status: str = ""  # finished: ok, failed or skipped
    reused: bool = False  # finished in an earlier run into the same directory
    message: str = ""  # a failed cell's reason, or the notice

    def __str__(self) -> str:
        if self.event == "notice":
            return f"bench: {self.message}"
        head = f"[{self.done}/{self.total}] {self.cell_id} {self.label}"
        if self.event == "started":
            return f"{head}: running"
        tail = f": {self.message}" if self.message else ""
        return f"{head}: {self.status}{' (earlier run)' if self.reused else ''}{tail}"


class _CallbackProgress:
    """The sweep's progress protocol (bench.execution.sweep.Progress) as calls of one function."""

    def __init__(self, callback: Callable[[CellProgress], Any]) -> None:
        self.callback, self.done, self.total = callback, 0, 0

    def cell_started(self, cell: Cell, index: int, total: int) -> None:
        self.total = total
        self.callback(CellProgress("started", self.done, total, cell.id, cell.label()))

    def cell_finished(self, result: CellResult, reused: bool) -> None:
        self.done += 1
        self.callback(
            CellProgress(
                "finished",
                self.done,
                self.total,
                result.id,
                result.cell.label(),
                result.status,
                reused,
                result.reason or "" if result.status == "failed" else "",
            )
        )

    def notice(self, message: str) -> None:
        self.callback(CellProgress("notice", self.done, self.total, message=message))


class _MlflowLogging:
    """Logs each newly finished cell to MLflow (the suite's `mlflow:` setting), then tells `inner`. An MLflow
    error never fails the run: it is a notice, and `bench export mlflow RUN_DIR` can log the run afterwards."""

    def __init__(self, inner: Any, run_dir: Path, suite: str, options: dict[str, Any]) -> None:
        self.inner, self.run_dir, self.suite, self.options = inner, run_dir, suite, options
        self.exporter: Any = None
        self.broken = False

    def cell_started(self, cell: Cell, index: int, total: int) -> None:
        self.inner.cell_started(cell, index, total)

    def notice(self, message: str) -> None:
        self.inner.notice(message)

    def cell_finished(self, result: CellResult, reused: bool) -> None:
        if not self.broken:
            try:
                if self.exporter is None:
                    from bench.tools.export_mlflow import MlflowExporter  # deferred: imports mlflow

                    self.exporter = MlflowExporter(
                        self.run_dir,
                        self.suite,
                        tracking_uri=self.options.get("tracking_uri"),
                        experiment=self.options.get("experiment"),
                    )
                self.exporter.log(result)
            except Exception as exc:  # noqa: BLE001 - the results are on disk; say why MLflow has none
                self.broken = True
                self.inner.notice(
                    f"MLflow logging stopped ({type(exc).__name__}: {exc}); "
                    f"log the run afterwards with: bench export mlflow {shlex.quote(str(self.run_dir))}"
                )
        self.inner.cell_finished(result, reused)


def _as_progress(progress: Any) -> Any:
    from bench.execution.sweep import SilentProgress  # deferred: imports torch

    if progress is None:
        return SilentProgress()
    if all(hasattr(progress, m) for m in ("cell_started", "cell_finished", "notice")):
        return progress
    if callable(progress):
        return _CallbackProgress(progress)
    raise InputError("progress must be a callable or a bench.execution.sweep.Progress", field="progress")


# -- running a suite ------------------------------------------------------------------------------
@dataclass
class Prepared:
    """A run about to start: its cells, device, executor and run directory (already holding the suite and
    env.json). `bench run` prints its header from this, then calls `execute`."""

    name: str
    profile: str | None
    cells: list[Cell]
    device: Any
    executor: Any
    store: RunStore
    base_dir: Path
    results_root: Path
    mlflow: dict[str, Any] | None = None
    forced: list[str] = field(default_factory=list)  # what --force-resume let differ from the directory's own run

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    def release(self) -> None:
        """Give up the run directory's lock without running (`execute` releases it when it ends)."""
        self.store.release()


def prepare(
    suite: str | Path | dict[str, Any] | None = None,
    profile: str | None = None,
    set: list[str] | None = None,  # noqa: A002 - the name of `bench run --set`
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    results_root: str | Path = "results",
    isolation: str | None = None,
    executor: str | None = None,
    force_resume: bool = False,
) -> Prepared:
    """Validate the suite, plan its cells, choose the device and executor, check the data, and open the run
    directory: its lock is taken here and held until `execute` ends (bench.execution.integrity); a resume that
    would run something else is refused unless `force_resume`."""
    if isolation is not None and isolation not in ("auto", "process", "none"):
        raise InputError(f"unknown isolation mode '{isolation}'", field="--isolation", hint="use auto, process or none")
    from bench.execution.executors import make_executor  # deferred: imports torch
    from bench.execution.integrity import begin_run, fingerprint, run_directory  # deferred: imports torch
    from bench.measure.train.datacheck import check_data  # deferred: reads the data (numpy, scikit-learn)
    from bench.platform.device import resolve_device  # deferred: imports torch
    from bench.platform.env import capture_env  # deferred: imports torch

    results_root = Path(results_root)
    if resume is not None:
        if suite or out or profile or set:
            raise InputError(
                "--resume takes the run directory's own plan",
                field="--resume",
                hint="give either SUITE (with --out to resume into a folder) or --resume RUN_DIR alone",
            )
        planned = _resume_plan(Path(resume))
    elif suite is None:
        raise InputError(
            "no suite given", hint="bench run SUITE (e.g. bench run suites/artists.yaml) or bench run --resume RUN_DIR"
        )
    else:
        planned = _suite_plan(suite, profile, set)
    cells = planned["cells"]
    set_threads(planned.get("threads"))
    device = resolve_device(planned["device"])
    runner = make_executor(
        executor or planned.get("executor") or "local",
        isolation=isolation or planned.get("isolation") or "auto",
        memory_limit_mb=planned.get("memory_limit_mb"),
        ray_options=planned.get("ray"),
        allocator=resolve_allocator(planned.get("allocator"), device.type),
    )
    # the data, once per source, before anything is written or run
    sources = check_data(cells, planned["base_dir"], suite_file=planned.get("source"))
    store = RunStore(resume) if resume is not None else run_directory(out, results_root, planned["name"])
    env = capture_env(device, seeds=sorted({c.seed for c in cells}), allocator=getattr(runner, "allocator", None))
    env["executor"] = runner.describe()  # how this (or this resumed) run executed its cells
    forced = begin_run(  # takes the lock: released when `execute` ends
        store,
        fingerprint_now=fingerprint(cells, sources, threads=_torch_threads(), resolved=planned.get("resolved")),
        env=env,
        resolved=planned["resolved"] if resume is None else None,
        suite_yaml=planned["yaml"] if resume is None else None,
        force_resume=force_resume,
    )
    return Prepared(
        name=planned["name"],
        profile=planned["profile"],
        cells=cells,
        device=device,
        executor=runner,
        store=store,
        base_dir=planned["base_dir"],
        results_root=results_root,
        mlflow=planned.get("mlflow"),
        forced=list(forced or []),
    )


def _torch_threads() -> int:
    import torch  # torch's thread count, set by the suite's `threads`

    return torch.get_num_threads()


def execute(prepared: Prepared, progress: Any = None, *, report: bool = True, strict: bool = False) -> Run:
    """Run a prepared run's cells (finished ones in its directory are kept), record the estimates beside the
    measured time, and render its report (unless `report=False`; a report error is kept in `report_error`),
    all under the run directory's lock, which is released when this returns or raises (Ctrl-C included).
    `strict` (bench --debug) raises what is otherwise only kept: a report error, a failed estimate."""
    from bench.execution.sweep import run_cells  # deferred: imports torch

    p = prepared
    try:
        estimates = _run_estimates(p.cells, p.device, p.base_dir, p.results_root, strict=strict)
        watcher = _as_progress(progress)
        if p.mlflow is not None:
            watcher = _MlflowLogging(watcher, p.run_dir, p.name, p.mlflow)
        started = time.perf_counter()
        summary = run_cells(p.cells, p.store, p.device, progress=watcher, base_dir=p.base_dir, executor=p.executor)
        timing = _record_estimates(p.store, p.cells, summary.results, estimates, time.perf_counter() - started)
        _write_seed_summary(p.store, summary.results)
        run = Run(p.run_dir, reused=summary.reused, corrupt=summary.corrupt, timing=timing, _results=summary.results)
        if report:
            try:
                run.report_paths = run.report()
            except Exception as exc:  # noqa: BLE001 - the results are safe on disk; say why the report is missing
                if strict:
                    raise
                run.report_error = f"{type(exc).__name__}: {exc}"
        return run
    finally:
        p.store.release()


def run(
    suite: str | Path | dict[str, Any],
    profile: str | None = None,
    set: list[str] | None = None,  # noqa: A002 - the name of `bench run --set`
    out: str | Path | None = None,
    *,
    progress: Any = None,
    report: bool = True,
    results_root: str | Path = "results",
    isolation: str | None = None,
    executor: str | None = None,
    force_resume: bool = False,
) -> Run:
    """Run a suite (a file, the name of one in suites/, or a dict as its YAML would hold) and return the Run.

    `set`: overrides as `bench run --set` takes them (["settings.train.epochs=3"]); `out`: the run directory
    (an existing one is resumed); `progress`: a callable given a `CellProgress` per cell (e.g. `print`)."""
    prepared = prepare(
        suite,
        profile,
        set,
        out,
        results_root=results_root,
        isolation=isolation,
        executor=executor,
        force_resume=force_resume,
    )
    return execute(prepared, progress, report=report)


def _suite_plan(suite: str | Path | dict[str, Any], profile: str | None, overrides: list[str] | None) -> dict:
    if isinstance(suite, dict):
        import yaml

        text = yaml.safe_dump(suite, sort_keys=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{suite.get('name', 'suite')}.yaml"
            path.write_text(text, encoding="utf-8")
            loaded = load_suite(path, profile, overrides)
        loaded._path = None  # a dict has no file: relative paths in it are relative to the current directory
        yaml_text: str | None = text
    else:
        loaded = load_suite(find_suite(str(suite), SUITE_DIRS), profile, overrides)
        yaml_text = loaded.path.read_text(encoding="utf-8") if loaded.path is not None else None
    return {
        "name": loaded.name,
        "profile": loaded.profile,
        "device": loaded.device,
        "base_dir": loaded.base_dir(),
        "cells": expand(loaded),
        "resolved": loaded.resolved_dict(),
        "isolation": loaded.isolation,
        "memory_limit_mb": loaded.memory_limit_mb,
        "threads": loaded.threads,
        "allocator": loaded.allocator,
        "executor": loaded.executor,
        "ray": loaded.ray.model_dump(),
        "mlflow": loaded.mlflow.model_dump() if loaded.mlflow is not None else None,
        "yaml": yaml_text,
        "source": loaded.path,
    }


def _resume_plan(run_dir: Path) -> dict[str, Any]:
    """What a run directory says about itself: its planned cells (plan.json) and its suite."""
    store = RunStore(run_dir)
    if not (run_dir / "plan.json").is_file():
        raise InputError(
            "not a run directory (no plan.json)", file=run_dir, hint="pass a folder written by `bench run`"
        )
    try:
        plan = store.read_json("plan.json")
        cells = [Cell.from_dict(c) for c in plan["cells"]]
        resolved = store.read_json("suite.resolved.json") if (run_dir / "suite.resolved.json").is_file() else {}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"unreadable plan ({exc})", file=run_dir / "plan.json", hint="start a new run instead"
        ) from None
    source = resolved.get("source")
    return {
        "name": resolved.get("name") or run_dir.parent.name,
        "profile": resolved.get("profile"),
        "device": resolved.get("device", "auto"),
        "base_dir": Path(source).resolve().parent if source else Path.cwd(),
        "cells": cells,
        "isolation": resolved.get("isolation", "auto"),
        "memory_limit_mb": resolved.get("memory_limit_mb"),
        "executor": resolved.get("executor", "local"),
        "ray": resolved.get("ray"),
        "threads": resolved.get("threads"),
        "allocator": resolved.get("allocator"),
        "resolved": resolved or None,
        "source": Path(source) if source else None,
        "mlflow": resolved.get("mlflow"),
    }


def set_threads(threads: int | None) -> None:
    """A suite's `threads:` sets torch's thread count for the run (its cells' child processes inherit it)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _run_estimates(cells: list, device, base_dir: Path, results_root: Path, *, strict: bool = False):
    """The plan's estimates for a run, from the cached calibration only (a run never calibrates: that
    would add to its own time); None without one, or if anything goes wrong (an estimate never fails a run)."""
    try:
        from bench.plan.calibration import default_path, load_cached, machine_key  # deferred: imports torch
        from bench.plan.workload import default_cache_path, estimate_cells  # deferred: imports torch

        cal = load_cached(default_path(results_root), machine_key(device))
        if cal is None:
            return None
        return {
            "calibration": cal,
            "cells": estimate_cells(
                cells, base_dir, cal, device_type=device.type, cache_path=default_cache_path(results_root)
            ),
        }
    except Exception:  # noqa: BLE001
        if strict:
            raise
        return None


def _write_seed_summary(store: RunStore, results: list[CellResult]) -> None:
    """summary.csv: cells that differ only by seed, aggregated (mean, std, 95% CI; bench.store.aggregate)."""
    from bench.store.aggregate import aggregate_seeds  # deferred: pandas and the statistics, not needed before

    rows = aggregate_seeds(results)
    if rows:
        store.write_rows_csv("summary.csv", rows)


def _record_estimates(store: RunStore, cells: list, results: list, estimates, wall_s: float) -> dict | None:
    """estimates.json: each cell's estimate beside its measured duration, and the run's wall time beside
    the estimated total, so the cost model can be checked against what happened. Returns the totals."""
    if estimates is None:
        return None
    by_id = {r.id: r for r in results}
    rows = []
    for cell, est in zip(cells, estimates["cells"]):
        r = by_id.get(cell.id)
        rows.append(
            {
                "id": cell.id,
                "label": cell.label(),
                "estimate_s": est["total"],
                "estimate_parts_s": est,
                "duration_s": r.duration_s if r is not None else None,
                "status": r.status if r is not None else None,
            }
        )
    cal = estimates["calibration"]
    doc = {
        "estimate_total_s": total(estimates["cells"], cal),
        "wall_s": wall_s,
        "cells": rows,
        "calibration_key": cal.key,
    }
    try:
        store.write_json("estimates.json", doc)
    except StorageError:
        return None
    return {"wall_s": wall_s, "estimate_total_s": doc["estimate_total_s"], "path": store.run_dir / "estimates.json"}


# -- comparing two runs ---------------------------------------------------------------------------
@dataclass
class Comparison:
    """Two runs compared by the regression gate (bench.gate.regression), cells matched by id."""

    baseline: str
    current: str
    gate: Any  # bench.gate.regression.Comparison: findings, new/missing/failed cells, warnings, inconclusive
    notes: list[str] = field(default_factory=list)  # what the reader should know about how it was judged

    @property
    def verdict(self) -> str:
        """'regression', 'inconclusive' (something could not be judged) or 'pass', as `bench compare` exits."""
        verdict = getattr(self.gate, "verdict", None)
        if isinstance(verdict, str):
            return verdict
        return "regression" if self.gate.regressed else "pass"

    @property
    def regressions(self) -> list:
        return self.gate.regressions

    @property
    def warnings(self) -> list[str]:
        return self.gate.warnings

    @property
    def inconclusive(self) -> list[str]:
        """Why some part could not be judged (the verdict is 'inconclusive' when this is not empty and nothing
        regressed)."""
        return self.gate.inconclusive

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "current": self.current, "verdict": self.verdict} | self.gate.to_dict()

    def to_pandas(self):
        """One row per cell and metric compared: baseline, current, change, allowed, regression, note..."""
        import pandas as pd

        rows = [f.to_dict() for f in self.gate.findings]
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["cell_id", "label", "metric"])

    def markdown(self) -> str:
        """The GitHub-flavoured summary `bench compare --markdown` writes."""
        from bench.gate.regression import markdown_summary  # deferred: imports scipy

        return markdown_summary(self.gate, self.baseline, self.current)

    def __repr__(self) -> str:
        return f"Comparison({self.current} against {self.baseline}: {self.verdict})"


def compare(
    baseline: Any,
    current: Any,
    *,
    thresholds: Sequence[str] = (),
    hardware_independent: bool = False,
    allow_hardware_mismatch: bool = False,
    baselines_root: str | Path = "results/baselines",
) -> Comparison:
    """Compare `current` with `baseline` (each a Run or a run directory; the baseline also the name of a saved
    one in `baselines_root`) with the regression gate, cells matched by id; `.verdict` is pass, regression or
    inconclusive. This is `bench compare`:

    - runs that evaluated different image sets (validation against held-out test) are refused (InputError);
    - the thresholds are the baseline suite's `regression:` section, never the run under test's (a change
      cannot loosen its own gate), overridden by `thresholds` ("METRIC:THRESHOLD", as `--threshold` takes);
    - on other hardware or software only what does not depend on the machine is judged (params and MACs
      exactly, accuracy and F1 coarsely) and the timings left unjudged make the verdict inconclusive, unless
      `hardware_independent` (leave timings out on purpose) or `allow_hardware_mismatch` (judge them anyway)."""
    from bench.gate.regression import compare_results, hardware_mismatch  # deferred: imports scipy
    from bench.report.data import load_run  # deferred: imports numpy and matplotlib's report package

    base_dir = (
        baseline.run_dir if isinstance(baseline, Run) else resolve_run_or_baseline(str(baseline), Path(baselines_root))
    )
    base_run = load_run(base_dir)
    repeats = load_repeats(base_dir)
    cur_run = load_run(_run_dir(current))
    refuse_mixed_evaluation([(base_run.label, base_run.results), (cur_run.label, cur_run.results)])
    section = dict(base_run.suite.get("regression") or {})
    section.update(dict(threshold_option(item) for item in thresholds))
    rules = thresholds_from(section, where=f"{base_run.run_dir}/suite.resolved.json: regression")
    notes = []
    if canonical_json(base_run.suite.get("regression") or {}) != canonical_json(cur_run.suite.get("regression") or {}):
        notes.append(
            "the current run's suite sets other thresholds; the baseline's are used "
            "(a change cannot loosen its own gate: pass --threshold to change them)"
        )
    mismatch = hardware_mismatch(base_run.env, cur_run.env)
    comp = compare_results(
        base_run.results,
        cur_run.results,
        rules,
        baseline_repeats=repeats,
        hardware_independent_only=hardware_independent or (bool(mismatch) and not allow_hardware_mismatch),
    )
    if mismatch:
        comp.warnings.append(
            "different hardware/software ("
            + "; ".join(mismatch)
            + ")"
            + (
                ": timings compared anyway (--allow-hardware-mismatch)"
                if allow_hardware_mismatch
                else ": timings not compared; params and MACs compared exactly, accuracy and F1 coarsely (training "
                "reproduces exactly only on the same machine: record a baseline on this hardware for a tight gate)"
            )
        )
        if not allow_hardware_mismatch and not hardware_independent:
            comp.inconclusive.append(
                "timings not judged on other hardware (" + "; ".join(mismatch) + "): gate timings with `bench gate`"
            )
    return Comparison(base_run.label, cur_run.label, comp, notes)
