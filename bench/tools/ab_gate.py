"""The same-machine A/B gate: a base revision and the current one measured side by side in one job.

As asv's `continuous` and TorchBench's CI do, both revisions run on the machine that judges them, so a
committed baseline from another CPU is not needed and a busy machine is not a reason to give up:

- the base revision is checked out in a git worktree and runs from it with this interpreter and its
  installed dependencies (`PYTHONPATH` puts the worktree's `bench` first), or with `--base-python` to gate
  an environment change (a torch upgrade) instead of a code change; the head is the working tree (or a
  second worktree for `--head REF`);
- both sides run the head's suite file; cells are paired by their configuration (model, resolution, batch,
  precision, strategy, seed, axes), and reported under the id the head computes, so a change that alters
  ids still gets a verdict;
- R rounds, in ABBA order (base first in odd rounds, head first in even ones), each side a `bench run` of
  its own whose speed cells each run in a fresh process (the run's isolation); round 1 runs every
  measurement of the suite, later rounds only `speed` — params, MACs and the trained accuracy and macro-F1
  (deterministic at a fixed thread count) are measured once per side and compared at their thresholds;
- timings are judged on per-round paired ratios (bench.gate.paired), memory on both sides' medians; rounds
  are added, up to `max_rounds`, until every timing is conclusive or one is a regression.

Every case it cannot judge — a side that did not build or run, a cell ok on the base side and skipped or
missing on the head side, a metric the base has and the head lacks, fewer complete rounds than asked, an
interval that still straddles its threshold — makes the verdict "inconclusive" (exit 3), with the reason.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import InputError
from bench.core.metric import Metric, Threshold
from bench.core.result import CellResult
from bench.gate.paired import (
    CONFIDENCE,
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    RoundsVerdict,
    judge_rounds,
    look_schedule,
    min_rounds,
    settle_wall_clock,
    withhold,
)
from bench.gate.regression import hardware_mismatch, judge, memory_judged
from bench.measure.catalogue import CATALOGUE, gated, threshold_option
from bench.platform.machine import usable_cores
from bench.platform.peaks import REUSE_ENV as REUSE_CPU_PEAK
from bench.store.run_store import RunStore
from bench.suite import load_suite

BASE, HEAD = "base", "head"
MIN_ROUNDS = min_rounds(CONFIDENCE)  # 6: the fewest that can give a 95% signed-rank interval


@dataclass
class Side:
    """One revision: where its code is and which interpreter runs it."""

    name: str
    root: Path
    python: str
    ref: str  # what the user named ("working tree" for the head as it is)
    commit: str | None = None
    problem: str | None = None  # why this side did not build or run

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env[REUSE_CPU_PEAK] = "1"  # MFU is not gated: no side and round re-times the CPU's peak
        return env


@dataclass
class OnceVerdict:
    """A metric measured once per side (round 1) and compared at its threshold."""

    cell_id: str
    label: str
    metric: str
    base: float
    head: float
    allowed: float
    threshold: str
    verdict: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass
class GateResult:
    """What `bench gate` found; `verdict` decides the exit code (pass 0, regression 1, inconclusive 3)."""

    base: dict[str, Any]
    head: dict[str, Any]
    rounds_asked: int
    rounds_run: int
    timings: list[RoundsVerdict] = field(default_factory=list)
    once: list[OnceVerdict] = field(default_factory=list)
    failed_cells: list[dict[str, str]] = field(default_factory=list)  # ok on base, failed on head
    inconclusive: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    looks: list[int] = field(default_factory=list)  # the planned looks: rounds at which timings may be judged
    confidence: float = CONFIDENCE  # of each look's interval (paired.look_schedule)
    judged_at: int = 0  # the look the timings were judged at (0: none reached)

    @property
    def interval(self) -> str:
        """The intervals' name in tables: "95% interval", "98.75% interval"."""
        return f"{self.confidence * 100:.4g}% interval"

    @property
    def looks_said(self) -> str:
        """How the rounds were judged, for a table's title."""
        if len(self.looks) <= 1:
            return f"{self.rounds_run} rounds"
        planned = ", ".join(map(str, self.looks))
        at = f"judged at round {self.judged_at} of" if self.judged_at else "none of"
        return f"{self.rounds_run} rounds; {at} the looks planned at {planned}; {self.interval}s"

    @property
    def regressions(self) -> list[str]:
        found = [f"{v.cell_id}:{v.metric}" for v in self.timings if v.verdict == REGRESSION]
        found += [f"{v.cell_id}:{v.metric}" for v in self.once if v.verdict == REGRESSION]
        return found + [f"{c['id']}:failed" for c in self.failed_cells]

    @property
    def verdict(self) -> str:
        if self.regressions:
            return REGRESSION
        undecided = any(v.undecided for v in self.timings)
        return INCONCLUSIVE if (self.inconclusive or undecided) else PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "regressions": self.regressions,
            "inconclusive": self.inconclusive
            + [f"{v.cell_id}:{v.metric}: {v.note}" for v in self.timings if v.undecided],
            "base": self.base,
            "head": self.head,
            "rounds_asked": self.rounds_asked,
            "rounds_run": self.rounds_run,
            "looks": self.looks,
            "confidence": self.confidence,
            "judged_at": self.judged_at,
            "timings": [v.to_dict() for v in self.timings],
            "once": [v.to_dict() for v in self.once],
            "failed_cells": self.failed_cells,
            "notes": self.notes,
        }


def pair_key(result: CellResult) -> str:
    """What pairs a base cell with a head cell: the configuration a person reads, not the id's hash (a
    change may alter ids) nor the measurements asked (later rounds run `speed` only)."""
    c = result.cell
    return json.dumps(
        [c.model, c.resolution, c.batch_size, c.precision, c.channels_last, c.compile, c.seed, c.strategy, c.axes],
        sort_keys=True,
        default=str,
    )


def thresholds_for_ab(overrides: Sequence[str] = ()) -> dict[str, Threshold]:
    """Per metric path: the catalogue's same-machine threshold for hardware-dependent metrics, its
    threshold for the others; `overrides` (METRIC:THRESHOLD) from the command line."""
    out: dict[str, Threshold] = {}
    for path, spec in {**gated(), **{p: m for p, m in CATALOGUE.items() if m.same_machine_threshold}}.items():
        text = spec.same_machine_threshold if spec.hardware_dependent else spec.threshold
        if text is not None:
            out[path] = Threshold.parse(text)
    for item in overrides:
        path, text = threshold_option(item)
        out[path] = Threshold.parse(text, where=f"--threshold {path}")
    return out


# -- running the sides ---------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(
            f"git {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}",
            hint="run bench gate inside the git checkout of the project, with a base revision it knows",
        )
    return done.stdout.strip()


def prepare_side(name: str, repo: Path, ref: str | None, workdir: Path, python: str) -> Side:
    """A worktree of `ref` (None: the working tree itself), checked to import its own `bench`."""
    if ref is None:
        side = Side(name, repo, python, "working tree", _git(repo, "rev-parse", "HEAD"))
    else:
        commit = _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
        root = workdir / f"{name}-worktree"
        _git(repo, "worktree", "add", "--detach", "--force", str(root), commit)
        side = Side(name, root, python, ref, commit)
    probe = subprocess.run(
        [python, "-c", "import bench, sys; sys.stdout.write(bench.__file__)"],
        capture_output=True,
        text=True,
        env=side.env(),
        cwd=side.root,
    )
    expected = (side.root / "bench").resolve()
    if probe.returncode != 0:
        side.problem = f"{name} ({side.ref}) does not import: {probe.stderr.strip()[-300:]}"
    elif Path(probe.stdout).resolve().parent != expected:
        side.problem = f"{name} ({side.ref}) imported bench from {probe.stdout}, not from {expected}"
    return side


def run_side(side: Side, suite: Path, out: Path, extra: Sequence[str], log: Path) -> str | None:
    """One `bench run` of the suite by this side's code; None, or why it did not run."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        done = subprocess.run(
            [side.python, "-m", "bench", "run", str(suite), "--out", str(out), "--no-report", *extra],
            cwd=side.root,
            env=side.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    if not (out / "cells").is_dir():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        return f"{side.name} ({side.ref}) did not run the suite (exit {done.returncode}): " + " / ".join(tail)
    return None


def _results(run_dir: Path) -> dict[str, CellResult]:
    return {pair_key(r): r for r in RunStore(run_dir).read_cells()}


# -- judging -------------------------------------------------------------------------------------------


def judge_once(base: dict[str, CellResult], head: dict[str, CellResult], thresholds, result: GateResult) -> None:
    """Round 1: statuses, and the metrics that do not need repeating (params, MACs, accuracy, F1)."""
    for key, h in head.items():
        b = base.get(key)
        label = h.cell.label()
        if b is None:
            result.notes.append(f"cell {h.id} ({label}) has no counterpart on the base side: new, not compared")
            continue
        if b.status == "ok" and h.status == "failed":
            result.failed_cells.append({"id": h.id, "label": label, "reason": h.reason or ""})
            continue
        if b.status == "ok" and h.status != "ok":
            result.inconclusive.append(f"cell {h.id} ({label}) was ok on the base side and is {h.status} on the head")
            continue
        if b.status != "ok":
            result.notes.append(f"cell {h.id} ({label}) is {b.status} on the base side: not compared")
            continue
        for path, spec in gated().items():
            if spec.hardware_dependent or path not in thresholds:
                continue
            vb, vh = spec.number(b), spec.number(h)
            if vb is None:
                continue
            if vh is None:
                result.inconclusive.append(
                    f"cell {h.id} ({label}): {path} measured on the base side, missing on the head"
                )
                continue
            regression, _, allowed, note = judge(spec, thresholds[path], vb, vh)
            result.once.append(
                OnceVerdict(
                    h.id, label, path, vb, vh, allowed, str(thresholds[path]), REGRESSION if regression else PASS, note
                )
            )
    for key, b in base.items():
        if key not in head and b.status == "ok":
            result.inconclusive.append(
                f"cell {b.id} ({b.cell.label()}) of the base side has no counterpart on the head"
            )


def per_round_metrics(thresholds) -> list[Metric]:
    """Hardware-dependent metrics with a same-machine threshold: measured every round."""
    return [
        spec
        for path, spec in CATALOGUE.items()
        if spec.hardware_dependent and spec.same_machine_threshold is not None and path in thresholds
    ]


def judge_round_values(
    rounds: list[tuple[dict[str, CellResult], dict[str, CellResult]]],
    head_ids: dict[str, CellResult],
    thresholds: dict[str, Threshold],
    *,
    strict_wall_clock: bool = False,
    confidence: float = CONFIDENCE,
) -> tuple[list[RoundsVerdict], list[OnceVerdict], list[str]]:
    """Timings on per-round ratios (intervals at `confidence`), memory on medians; plus reasons it cannot judge
    (missing values). Unless `strict_wall_clock`, a cell's passed CPU time settles its wall-clock timings the
    load left undecided."""
    timings: list[RoundsVerdict] = []
    medians: list[OnceVerdict] = []
    problems: list[str] = []
    for key, h1 in head_ids.items():
        for spec in per_round_metrics(thresholds):
            base_vals, head_vals = [], []
            for base, head in rounds:
                b, h = base.get(key), head.get(key)
                vb = spec.number(b) if b is not None and b.status == "ok" else None
                vh = spec.number(h) if h is not None and h.status == "ok" else None
                if vb is not None and vh is not None and memory_judged(spec, b):
                    base_vals.append(vb)
                    head_vals.append(vh)
                elif vb is not None and vh is None:
                    problems.append(
                        f"cell {h1.id} ({h1.cell.label()}): {spec.path} measured on the base side, missing on the head"
                    )
            if not base_vals:
                continue
            if len(base_vals) < len(rounds):
                problems.append(
                    f"cell {h1.id} ({h1.cell.label()}): {spec.path} has {len(base_vals)} complete rounds of {len(rounds)}"
                )
            if spec.timing:
                timings.append(
                    judge_rounds(
                        spec,
                        thresholds[spec.path],
                        base_vals,
                        head_vals,
                        cell_id=h1.id,
                        label=h1.cell.label(),
                        confidence=confidence,
                    )
                )
            else:
                mb, mh = sorted(base_vals)[len(base_vals) // 2], sorted(head_vals)[len(head_vals) // 2]
                regression, _, allowed, note = judge(spec, thresholds[spec.path], mb, mh)
                medians.append(
                    OnceVerdict(
                        h1.id,
                        h1.cell.label(),
                        spec.path,
                        mb,
                        mh,
                        allowed,
                        str(thresholds[spec.path]),
                        REGRESSION if regression else PASS,
                        (note + "; " if note else "") + f"medians of {len(base_vals)} rounds",
                    )
                )
    return (timings if strict_wall_clock else settle_wall_clock(timings)), medians, sorted(set(problems))


def decided(timings: Sequence[RoundsVerdict]) -> bool:
    """Whether more rounds can change the gate's verdict: nothing is left undecided, or a timing is a regression
    already past doubt (a regression outranks everything else)."""
    return not any(v.undecided for v in timings) or any(v.verdict == REGRESSION for v in timings)


def oversubscribed(threads: int | None, cores: int | None = None) -> str | None:
    """Why two sides run at once would contend for cores, or None. Each side runs the suite's `threads`
    (None: torch's default, one per usable core); past one thread per core, a thread waits for a core
    inside the timed calls, which spreads the CPU time the gate decides on (spin-waits count as CPU time)."""
    cores = cores or usable_cores()
    threads = threads or cores
    if 2 * threads <= cores:
        return None
    fix = (
        f"set threads: {cores // 2} in the suite (or --set threads={cores // 2})" if cores >= 2 else "drop --concurrent"
    )
    return (
        f"--concurrent: the two sides run {threads} torch thread{'s' if threads > 1 else ''} each, "
        f"{2 * threads} on {cores} usable core{'s' if cores > 1 else ''}; they contend for cores: {fix}"
    )


def run_gate(
    base_ref: str,
    suite: str | Path,
    *,
    head_ref: str | None = None,
    repo: str | Path = ".",
    out: str | Path,
    rounds: int = MIN_ROUNDS,
    max_rounds: int | None = None,
    base_python: str | None = None,
    threshold_overrides: Sequence[str] = (),
    overrides: Sequence[str] = (),
    progress: Callable[[str], None] = lambda message: None,
    concurrent: bool = False,
    strict_wall_clock: bool = False,
) -> GateResult:
    """Measure `base_ref` and the head (the working tree, or `head_ref`) on this machine and judge them."""
    if rounds < MIN_ROUNDS:
        raise InputError(
            f"{rounds} rounds cannot give a 95% interval", field="--rounds", hint=f"ask for {MIN_ROUNDS} or more"
        )
    max_rounds = max(max_rounds or rounds, rounds)
    suite = Path(suite).resolve()
    resolved = load_suite(suite, None, list(overrides))  # the head's suite, as both sides will run it
    measures = set(resolved.measure)  # rounds after the first run `speed` only; without `speed`, one round
    crowded = oversubscribed(resolved.threads) if concurrent else None
    if crowded:
        progress(f"note: {crowded}")
    if "speed" not in measures:  # nothing to time: params, MACs and trained metrics are measured once per side
        rounds = max_rounds = 1
    looks, confidence = look_schedule(rounds, max_rounds)
    repo = Path(_git(Path(repo), "rev-parse", "--show-toplevel"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    thresholds = thresholds_for_ab(threshold_overrides)
    sets = [x for item in overrides for x in ("--set", item)]
    later_sets = sets + (["--set", "measure=[speed]"] if measures - {"speed"} else [])
    workdir = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    sides: list[Side] = []
    try:
        sides.append(prepare_side(BASE, repo, base_ref, workdir, base_python or sys.executable))
        sides.append(prepare_side(HEAD, repo, head_ref, workdir, sys.executable))
        result = GateResult(
            base={"ref": sides[0].ref, "commit": sides[0].commit, "python": sides[0].python},
            head={"ref": sides[1].ref, "commit": sides[1].commit, "python": sides[1].python},
            rounds_asked=rounds,
            rounds_run=0,
            notes=[crowded] if crowded else [],
            looks=looks,
            confidence=confidence,
        )
        broken = [s.problem for s in sides if s.problem]
        if broken:
            result.inconclusive += [f"side did not build: {p}" for p in broken]
            return result
        done: list[tuple[dict[str, CellResult], dict[str, CellResult]]] = []
        head_first: dict[str, CellResult] = {}
        for r in range(1, max_rounds + 1):
            order = sides if r % 2 == 1 else sides[::-1]  # ABBA: AB, BA, AB, ...
            got: dict[str, dict[str, CellResult]] = {}
            failed = None
            extra = sets if r == 1 else later_sets
            if concurrent:  # both sides at once, one per core: the same moment's load for both
                progress(f"round {r}: base and head together")
                with ThreadPoolExecutor(max_workers=2) as pool:
                    fails = list(
                        pool.map(
                            lambda side: run_side(
                                side,
                                suite,
                                out / side.name / f"round-{r:02d}",
                                extra,
                                out / side.name / f"round-{r:02d}.log",
                            ),
                            order,  # who is launched first alternates too (ABBA), as one after the other
                        )
                    )
                failed = next((f for f in fails if f), None)
                if not failed:
                    got = {side.name: _results(out / side.name / f"round-{r:02d}") for side in sides}
            for side in [] if concurrent else order:
                progress(f"round {r}: {side.name} ({side.ref})")
                run_dir = out / side.name / f"round-{r:02d}"
                failed = run_side(side, suite, run_dir, extra, out / side.name / f"round-{r:02d}.log")
                if failed:
                    break
                got[side.name] = _results(run_dir)
            if failed:
                result.inconclusive.append(f"round {r}: {failed}")
                break
            if r == 1:
                head_first = got[HEAD]
                judge_once(got[BASE], got[HEAD], thresholds, result)
                _check_same_machine(out, result)
            done.append((got[BASE], got[HEAD]))
            result.rounds_run = r
            if r in looks:  # judged at these rounds only: each look is another chance of a wrong verdict
                timings, _, _ = judge_round_values(
                    done, head_first, thresholds, strict_wall_clock=strict_wall_clock, confidence=confidence
                )
                if decided(timings):
                    break
        if result.rounds_run < rounds:
            result.inconclusive.append(f"{result.rounds_run} complete rounds of the {rounds} asked")
        if done:
            # judged at the last planned look reached: a round that failed after it adds no look of its own
            result.judged_at = max((n for n in looks if n <= len(done)), default=0)
            timings, medians, problems = judge_round_values(
                done[: result.judged_at or len(done)],
                head_first,
                thresholds,
                strict_wall_clock=strict_wall_clock,
                confidence=confidence,
            )
            if not result.judged_at:
                timings = withhold(timings, f"no planned look reached: {len(done)} rounds, the first at {looks[0]}")
            elif result.judged_at < len(done):
                result.notes.append(f"timings judged at round {result.judged_at}, the last planned look reached")
            result.timings, result.inconclusive = timings, result.inconclusive + problems
            result.once += medians
        return result
    finally:
        for side in sides:
            if side.root.is_relative_to(workdir):
                subprocess.run(
                    ["git", "-C", str(repo), "worktree", "remove", "--force", str(side.root)], capture_output=True
                )
        shutil.rmtree(workdir, ignore_errors=True)


def _check_same_machine(out: Path, result: GateResult) -> None:
    """Both sides' round-1 environments: what differs besides the code is said (a --base-python gate
    changes torch on purpose)."""
    try:
        envs = [json.loads((out / s / "round-01" / "env.json").read_text(encoding="utf-8")) for s in (BASE, HEAD)]
    except (OSError, ValueError):
        return
    for diff in hardware_mismatch(*envs):
        result.notes.append(f"the sides differ in {diff}")
