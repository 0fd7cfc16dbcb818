"""The same-machine A/B gate: its interval, its three verdicts, and every case in which it cannot judge.

The repeated trials on a loaded machine (10 A/A, 10 with a 15% slowdown, ...) are in
benchmarks/gate_trials/run_trials.py and their figures in docs/measurements-log.md; these tests pin the
maths against published values and the fail-open cases against the exit code."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.metric import Threshold
from bench.core.result import CellResult
from bench.gate.paired import (
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    hodges_lehmann,
    judge_rounds,
    look_schedule,
    signed_rank_critical,
)
from bench.measure.catalogue import CPU_TIME_MEDIAN, LATENCY_MEDIAN, MACRO_F1, PARAMS, THROUGHPUT
from bench.suite import load_suite
from bench.tools.ab_gate import (
    GateResult,
    decided,
    judge_once,
    judge_round_values,
    oversubscribed,
    pair_key,
    thresholds_for_ab,
)
from tests.cell_factory import make_cell

REPO = Path(__file__).resolve().parent.parent


def test_signed_rank_critical_values_match_the_published_table():
    # two-sided 5% critical values of Wilcoxon's signed-rank T (e.g. Siegel, Nonparametric Statistics, table G)
    published = {6: 0, 7: 2, 8: 3, 9: 5, 10: 8, 12: 13, 15: 25, 20: 52}
    assert {n: signed_rank_critical(n) for n in published} == published
    assert signed_rank_critical(5) is None  # 1/32 > 2.5%: five rounds cannot give a 95% interval


def test_hodges_lehmann_interval_keeps_its_coverage_on_heavy_tailed_rounds():
    """2,000 simulated gates of 8 rounds whose log-ratios are Student-t(3) (a round spoilt by load now and
    then): the 95% interval covers the true shift in at least 95% (exact: 1 - 2 * 5/256 = 0.961)."""
    rng = np.random.default_rng(20261202)
    covered = sum(
        lo <= 0.0 <= hi for _, lo, hi in (hodges_lehmann(rng.standard_t(3, size=8) * 0.03) for _ in range(2000))
    )
    assert covered / 2000 >= 0.95
    est, lo, hi = hodges_lehmann([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert (est, lo, hi) == (3.5, 1.0, 6.0)  # n = 6: critical 0, the extreme Walsh averages


def test_three_verdicts_on_hand_made_rounds():
    t5 = Threshold.parse("5%")
    base = [10.0, 10.2, 9.9, 10.1, 10.0, 10.3, 9.8, 10.0]
    slow = judge_rounds(LATENCY_MEDIAN, t5, base, [b * 1.15 for b in base])
    assert slow.verdict == REGRESSION and slow.ratio == pytest.approx(1.15)
    same = judge_rounds(
        LATENCY_MEDIAN, t5, base, [b * f for b, f in zip(base, [1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99])]
    )
    assert same.verdict == PASS and same.ratio_high < 1.05
    # throughput is higher-better: 15% fewer images per second is the regression
    assert judge_rounds(THROUGHPUT, t5, base, [b * 0.85 for b in base]).verdict == REGRESSION
    assert judge_rounds(THROUGHPUT, t5, base, [b * 1.3 for b in base]).improvement


def test_an_interval_too_wide_to_decide_is_inconclusive_never_a_pass():
    t5 = Threshold.parse("5%")
    base = [10.0] * 8
    noisy = [10.0 * f for f in (0.8, 1.25, 0.9, 1.2, 1.0, 0.85, 1.15, 1.05)]
    wide = judge_rounds(LATENCY_MEDIAN, t5, base, noisy)
    assert wide.verdict == INCONCLUSIVE and "straddles" in wide.note
    few = judge_rounds(LATENCY_MEDIAN, t5, base[:5], base[:5])  # identical, but five rounds give no 95% interval
    assert few.verdict == INCONCLUSIVE and math.isinf(few.ratio_high)


def _rounds(cell, walls, cpus):
    """One (base, head) pair of sides per round: head's wall-clock and CPU time = base's x the given factors."""
    out = []
    for wall, cpu in zip(walls, cpus):
        base, head = _speed(cell, 50.0), _speed(cell, 50.0 * wall)
        base.measurements["speed"]["cpu_time_median_ms"] = 40.0
        head.measurements["speed"]["cpu_time_median_ms"] = 40.0 * cpu
        out.append((_side(base), _side(head)))
    return out


# a loaded machine's A/A rounds: the wall clock of a round moves 0.69-1.69 (measured), the CPU time within 0.95-1.09
LOADED_WALL = (0.70, 1.45, 0.88, 1.13, 0.80, 1.49, 0.83, 1.69)
LOADED_CPU = (0.98, 0.97, 1.00, 1.03, 0.96, 0.95, 1.02, 1.01)


@pytest.mark.parametrize(
    "cpus, strict, verdict",
    [
        (LOADED_CPU, False, PASS),  # the CPU time passes: it settles the undecided wall clock
        (LOADED_CPU, True, INCONCLUSIVE),  # --strict-wall-clock: the wall clock must decide itself
        ([c * 1.15 for c in LOADED_CPU], False, REGRESSION),  # 15% more CPU work: a regression whatever the wall
        ([1.0, 1.2, 0.85, 1.1, 0.9, 1.25, 0.8, 1.05], False, INCONCLUSIVE),  # undecided CPU time settles nothing
    ],
)
def test_a_loaded_cpu_is_judged_on_cpu_time_and_its_wall_clock_settled_only_by_a_pass(cpus, strict, verdict):
    cell = make_cell()
    rounds = _rounds(cell, LOADED_WALL, cpus)
    head = rounds[0][1]
    timings, _, problems = judge_round_values(rounds, head, thresholds_for_ab(), strict_wall_clock=strict)
    result = GateResult(base={}, head={}, rounds_asked=8, rounds_run=8, timings=timings, inconclusive=problems)
    wall = next(v for v in timings if v.metric == LATENCY_MEDIAN.path)
    cpu = next(v for v in timings if v.metric == CPU_TIME_MEDIAN.path)
    assert wall.verdict == INCONCLUSIVE  # the load leaves the wall clock undecided in every case
    assert result.verdict == verdict, result.to_dict()
    assert (wall.settled_by == CPU_TIME_MEDIAN.path) == (verdict == PASS)
    if verdict == REGRESSION:
        assert cpu.verdict == REGRESSION and result.regressions == [f"{cell.id}:{CPU_TIME_MEDIAN.path}"]


@pytest.mark.parametrize(
    "cpus, more_rounds",
    [
        (LOADED_CPU, False),  # the CPU time passed and settled the wall clock: done
        ([c * 1.15 for c in LOADED_CPU], False),  # a CPU-time regression: done, the wall clock cannot undo it
        ([1.0, 1.2, 0.85, 1.1, 0.9, 1.25, 0.8, 1.05], True),  # undecided: another round may decide
    ],
)
def test_rounds_stop_once_the_verdict_cannot_change(cpus, more_rounds):
    rounds = _rounds(make_cell(), LOADED_WALL, cpus)
    timings, _, _ = judge_round_values(rounds, rounds[0][1], thresholds_for_ab())
    assert decided(timings) is not more_rounds


def test_a_conclusive_wall_clock_regression_fails_the_gate_even_when_cpu_time_passes():
    cell = make_cell()  # lost parallelism: the same CPU work, twice the wall time
    rounds = _rounds(cell, [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 2.0, 2.0], LOADED_CPU)
    timings, _, _ = judge_round_values(rounds, rounds[0][1], thresholds_for_ab())
    result = GateResult(base={}, head={}, rounds_asked=8, rounds_run=8, timings=timings)
    assert result.verdict == REGRESSION and f"{cell.id}:{LATENCY_MEDIAN.path}" in result.regressions


def _speed(cell, latency_ms, *, status="ok", f1=0.8, with_latency=True):
    speed = {"status": "ok", "throughput_img_s": cell.batch_size / latency_ms * 1e3, "memory_kind": "cpu_peak_rss"}
    if with_latency:
        speed["latency_median_ms"] = latency_ms
    return CellResult(
        cell=cell,
        status=status,
        reason="boom" if status == "failed" else None,
        measurements={
            "profile": {"status": "ok", "params": 100, "macs": 1000},
            "speed": speed,
            "train": {"status": "ok", "macro_f1": f1, "accuracy": f1},
        },
    )


def _side(*results):
    return {pair_key(r): r for r in results}


def test_cells_pair_by_configuration_not_by_id_and_report_the_heads_id():
    a = make_cell()
    b = make_cell(settings={"train": {"epochs": 3}})  # a change that alters the id, not the configuration
    assert a.id != b.id and pair_key(_speed(a, 10)) == pair_key(_speed(b, 10))
    result = GateResult(base={}, head={}, rounds_asked=1, rounds_run=1)
    judge_once(_side(_speed(a, 10)), _side(_speed(b, 10, f1=0.75)), thresholds_for_ab(), result)
    f1 = next(v for v in result.once if v.metric == MACRO_F1.path)
    assert f1.cell_id == b.id and f1.verdict == REGRESSION  # 0.05 below, past 0.01
    assert next(v for v in result.once if v.metric == PARAMS.path).verdict == PASS


@pytest.mark.parametrize(
    "head_kwargs, expected",
    [
        ({"status": "skipped"}, "was ok on the base side and is skipped on the head"),
        ({"with_latency": False}, "speed.latency_median_ms measured on the base side, missing on the head"),
    ],
)
def test_a_cell_or_metric_gone_on_the_head_is_inconclusive(head_kwargs, expected):
    cell = make_cell()
    base, head = _side(_speed(cell, 10)), _side(_speed(cell, 10, **head_kwargs))
    result = GateResult(base={}, head={}, rounds_asked=6, rounds_run=6)
    judge_once(base, head, thresholds_for_ab(), result)
    timings, _, problems = judge_round_values([(base, head)] * 6, head, thresholds_for_ab())
    result.inconclusive += problems
    assert any(expected in why for why in result.inconclusive), result.inconclusive
    assert result.verdict == INCONCLUSIVE


def test_a_cell_failed_on_the_head_is_a_regression_and_one_missing_there_inconclusive():
    cell, other = make_cell(), make_cell(model="mobilenet_v2", family="mobilenet")
    result = GateResult(base={}, head={}, rounds_asked=1, rounds_run=1)
    judge_once(_side(_speed(cell, 10), _speed(other, 10)), _side(_speed(cell, 10, status="failed")), {}, result)
    assert result.verdict == REGRESSION and result.regressions == [f"{cell.id}:failed"]
    assert any("has no counterpart on the head" in why for why in result.inconclusive)


def test_fewer_complete_rounds_than_asked_is_inconclusive():
    cell = make_cell()
    base, head = _side(_speed(cell, 10)), _side(_speed(cell, 10))
    gone = _side(_speed(cell, 10, status="failed"))
    timings, _, problems = judge_round_values([(base, head)] * 6 + [(base, gone)], head, thresholds_for_ab())
    assert any("has 6 complete rounds of 7" in p for p in problems)


def test_thresholds_come_from_the_catalogue_or_the_command_line_never_the_suite_under_test():
    defaults = thresholds_for_ab()
    assert str(defaults[THROUGHPUT.path]) == THROUGHPUT.same_machine_threshold
    assert str(defaults[MACRO_F1.path]) == MACRO_F1.threshold
    assert str(thresholds_for_ab([f"{THROUGHPUT.path}:3%"])[THROUGHPUT.path]) == "3%"
    with pytest.raises(Exception, match="bad threshold"):
        thresholds_for_ab(["speed.throughput:3%"])


@pytest.fixture
def git_checkout(tmp_path):
    """A throwaway clone of this checkout's HEAD (the gate makes worktrees in it)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
    return clone


def _gate(clone, *args):
    env = {**os.environ, "PYTHONPATH": str(clone)}
    return subprocess.run(
        [sys.executable, "-m", "bench", "gate", *args], cwd=clone, env=env, capture_output=True, text=True
    )


def test_a_side_that_does_not_build_ends_inconclusive(git_checkout, tmp_path):
    done = _gate(git_checkout, "HEAD", "smoke", "--base-python", "/bin/false", "--out", str(tmp_path / "g"))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "side did not build" in done.stdout + done.stderr
    assert json.loads((tmp_path / "g" / "gate.json").read_text())["verdict"] == INCONCLUSIVE
    ok = _gate(
        git_checkout, "HEAD", "smoke", "--base-python", "/bin/false", "--out", str(tmp_path / "h"), "--inconclusive-ok"
    )
    assert ok.returncode == 0


def test_a_side_that_stops_running_after_round_one_ends_inconclusive(git_checkout, tmp_path):
    """The base side's Python works for its import check and round 1, then fails: 1 round of 6 -> exit 3."""
    counter = tmp_path / "calls"
    wrapper = tmp_path / "python"
    wrapper.write_text(
        f"#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}\n"
        f'[ "$n" -ge 3 ] && exit 1\nexec {sys.executable} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        "name: tiny\nmodels: [small_cnn]\nnum_classes: 10\nmatrix: {resolution: [32], batch_size: [2]}\n"
        "measure: [speed]\nsettings:\n  speed: {warmup_iters: 2, min_repeats: 3, min_time_s: 0.05, reference: false}\n"
    )
    done = _gate(git_checkout, "HEAD", str(suite), "--base-python", str(wrapper), "--out", str(tmp_path / "g"))
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    verdict = json.loads((tmp_path / "g" / "gate.json").read_text())
    assert verdict["rounds_run"] == 1 and any("1 complete rounds of the 6 asked" in w for w in verdict["inconclusive"])


def test_compare_cli_exit_code_for_a_metric_gone_and_a_cell_skipped(tmp_path):
    """The committed-baseline mode: the nightly baseline against a copy of itself (pass), then with a
    metric removed and with a cell turned skipped (inconclusive, exit 3)."""
    import shutil

    runner = CliRunner()

    def copy(name, edit=None, source=REPO / "results" / "baselines" / "nightly"):
        target = tmp_path / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("repeats"))
        for cell in (target / "cells").glob("*.json"):  # the busy-machine guard is tested on its own
            data = json.loads(cell.read_text())
            (data["measurements"].get("speed") or {}).pop("reference_samples_s", None)
            cell.write_text(json.dumps(data))
        if edit:
            cell = sorted((target / "cells").glob("*.json"))[0]
            data = json.loads(cell.read_text())
            edit(data)
            cell.write_text(json.dumps(data))
        return target

    base = copy("base")
    same = runner.invoke(app, ["compare", str(base), str(copy("same"))])
    assert same.exit_code == 0, same.output

    def drop_params(data):
        data["measurements"]["profile"].pop("params")

    gone = runner.invoke(app, ["compare", str(base), str(copy("gone", drop_params))])
    assert gone.exit_code == 3 and "missing now" in gone.output, gone.output

    def skip(data):
        data["status"] = "skipped"

    skipped = runner.invoke(app, ["compare", str(base), str(copy("skipped", skip))])
    assert skipped.exit_code == 3 and "is skipped now" in skipped.output, skipped.output


@pytest.mark.parametrize(
    ("sets", "cores", "crowded"),
    [
        ([], 2, None),  # nightly: threads 1, one per side on 2 cores
        (["threads=2"], 2, "set threads: 1"),  # 4 threads on 2 cores
        (["threads=2"], 4, None),
        (["threads=1"], 1, "drop --concurrent"),  # no room for two sides at all
    ],
)
def test_concurrent_sides_that_would_share_a_core_are_named_with_the_fix(sets, cores, crowded):
    why = oversubscribed(load_suite(REPO / "suites" / "nightly.yaml", None, sets).threads, cores=cores)
    if crowded is None:
        assert why is None
    else:
        assert why is not None and crowded in why and f"on {cores} usable core" in why, why


def test_the_looks_are_few_and_their_intervals_wider_the_more_there_are():
    assert look_schedule(6, 6) == ([6], 0.95)  # rounds fixed: one look, the plain 95% interval
    assert look_schedule(6, 24) == ([8, 12, 18, 24], pytest.approx(1 - 0.05 / 4))
    assert look_schedule(6, 12) == ([7, 12], pytest.approx(1 - 0.05 / 2))
    for rounds, top in [(6, 7), (6, 24), (6, 100), (10, 40)]:
        looks, confidence = look_schedule(rounds, top)
        assert looks[-1] == top and looks == sorted(set(looks)) and looks[0] >= rounds
        assert confidence >= 1 - 0.05 / len(looks) - 1e-12  # Bonferroni over the looks
        assert signed_rank_critical(looks[0], confidence) is not None  # the first look can decide


def _sequential_gate(true_ratio, sd, looks, confidence, rng):
    """One simulated gate of a latency: per-round log-ratios drawn independently (the round is the unit),
    judged at `looks` and stopped at the first conclusive verdict, as run_gate does."""
    spec = LATENCY_MEDIAN
    head = list(np.exp(np.log(true_ratio) + sd * rng.standard_normal(looks[-1])))
    for n in looks:
        v = judge_rounds(spec, Threshold(relative=0.05), [1.0] * n, head[:n], confidence=confidence)
        if v.verdict != INCONCLUSIVE:
            return v.verdict
    return INCONCLUSIVE


def test_looking_again_and_again_keeps_the_wrong_verdicts_within_the_confidence():
    """A change exactly at the 5% threshold: a gate that judged every round from 6 to 24 at 95% called it a
    regression far more often than the 2.5% one side of a 95% interval allows; the look schedule keeps it
    there. A 15% slowdown is still caught and an unchanged revision passes (2000 simulated gates each)."""
    rng = np.random.default_rng(20)
    every_round = (list(range(6, 25)), 0.95)
    few = look_schedule(6, 24)
    n = 2000

    def rate(true_ratio, schedule, verdict, sd=0.05):
        return sum(_sequential_gate(true_ratio, sd, *schedule, rng) == verdict for _ in range(n)) / n

    assert rate(1.05, every_round, REGRESSION) > 0.05  # the inflation the schedule exists for
    assert rate(1.05, few, REGRESSION) <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / n)
    assert rate(1.05, few, PASS) <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / n)
    assert rate(1.15, few, REGRESSION) >= 0.99
    assert rate(1.0, few, REGRESSION) == 0 and rate(1.0, few, PASS) >= 0.95  # the rest: inconclusive at 24


@pytest.mark.parametrize(
    ("cpus", "fail_at", "rounds_run", "judged_at", "verdict"),
    [
        ([1.0] * 24, None, 8, 8, PASS),  # decided at the first look, 8, not at 6
        ([1.0, 1.12, 0.97, 1.10, 1.02, 1.09] * 4, None, 24, 24, INCONCLUSIVE),  # undecided: every look, to 24
        ([1.0, 1.12, 0.97, 1.10, 1.02, 1.09] * 4, 10, 9, 8, INCONCLUSIVE),  # round 10 fails: judged at look 8, not 9
        ([1.3] * 24, 8, 7, 0, INCONCLUSIVE),  # fails before any look: a clear 30% is withheld, not judged at 7
    ],
)
def test_the_gate_judges_only_at_its_planned_looks(
    monkeypatch, tmp_path, cpus, fail_at, rounds_run, judged_at, verdict
):
    """run_gate's own loop, its processes replaced by made-up rounds: the timings are judged at the rounds
    look_schedule(6, 24) plans (8, 12, 18, 24) and at its confidence, never at a round in between."""
    import bench.tools.ab_gate as ab

    cell = make_cell()
    made = _rounds(cell, [1.0] * 24, cpus)
    judged: list[tuple[int, float]] = []
    real_judge = ab.judge_round_values

    def spy(rounds, *args, **kwargs):
        judged.append((len(rounds), kwargs["confidence"]))
        return real_judge(rounds, *args, **kwargs)

    def run_side(side, suite, out, extra, log):
        return "the side crashed" if int(out.name.split("-")[1]) == fail_at else None

    def results(run_dir):
        base, head = made[int(run_dir.name.split("-")[1]) - 1]
        return base if run_dir.parent.name == ab.BASE else head

    monkeypatch.setattr(ab, "_git", lambda repo, *args: str(tmp_path))
    monkeypatch.setattr(
        ab, "prepare_side", lambda name, repo, ref, workdir, py: ab.Side(name, tmp_path, py, name, "c0")
    )
    monkeypatch.setattr(ab, "run_side", run_side)
    monkeypatch.setattr(ab, "_results", results)
    monkeypatch.setattr(ab, "judge_round_values", spy)
    result = ab.run_gate("HEAD", REPO / "suites" / "nightly.yaml", out=tmp_path / "g", rounds=6, max_rounds=24)
    looks, confidence = look_schedule(6, 24)
    assert result.looks == looks and result.confidence == confidence
    withheld = {rounds_run} if judged_at == 0 else set()  # judged only to be withheld (memory, missing values)
    assert {n for n, _ in judged} <= set(looks) | withheld and {c for _, c in judged} == {confidence}
    assert (result.rounds_run, result.judged_at, result.verdict) == (rounds_run, judged_at, verdict), result.to_dict()
    if judged_at == 0:
        assert all(v.verdict == INCONCLUSIVE and "no planned look reached" in v.note for v in result.timings)
