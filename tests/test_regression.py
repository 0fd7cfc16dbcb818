"""Regression checks on tiny hand-made results: thresholds parsed, directions, timing noise, exact metrics,
matching by id (never by row order), and the CLI's exit codes."""

import json
import math

import pytest
from cell_factory import make_cell
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import InputError
from bench.core.metric import Threshold
from bench.core.result import CellResult
from bench.gate.regression import between_run_spread, busy_reason, compare_results, judge
from bench.measure.catalogue import CATALOGUE, thresholds_from
from bench.store.run_store import RunStore


def _cell(model="resnet18", seed=0):
    return make_cell(model=model, family="resnet", resolution=32, batch_size=4, seed=seed)


def _result(cell, *, samples=(0.010, 0.011, 0.010, 0.012, 0.010), f1=0.80, params=100, status="ok", refs=None):
    med = sorted(samples)[len(samples) // 2]
    speed = {
        "status": "ok",
        "throughput_img_s": cell.batch_size / med,
        "latency_median_ms": med * 1e3,
        "samples_s": list(samples),
    }
    if refs is not None:
        speed["reference_samples_s"] = list(refs)
        ratios = sorted(s / r for s, r in zip(samples, refs))
        speed["latency_vs_reference"] = ratios[len(ratios) // 2]
    return CellResult(
        cell=cell,
        status=status,
        measurements={
            "profile": {"status": "ok", "params": params, "macs": 1000},
            "speed": speed,
            "train": {"status": "ok", "macro_f1": f1, "accuracy": f1 + 0.1},
        },
    )


def test_threshold_parsing_exact():
    assert Threshold.parse("10%") == Threshold(relative=0.10)
    assert Threshold.parse("0.01") == Threshold(absolute=0.01)
    assert Threshold.parse("5%+0.02") == Threshold(relative=0.05, absolute=0.02)
    assert Threshold.parse(0.5) == Threshold(absolute=0.5)
    assert Threshold.parse("exact").exact
    off = Threshold.parse("off")
    assert off.off and str(off) == "off"
    assert judge(CATALOGUE["train.train_img_s"], off, 100.0, 1.0)[:2] == (False, False)  # 99% slower, not judged
    assert Threshold.parse("5%+0.02").allowed(1.0) == pytest.approx(0.05)
    assert Threshold.parse("5%+0.02").allowed(0.1) == pytest.approx(0.02)
    for bad in ("ten", "%", "", "5%%"):
        with pytest.raises(InputError, match="bad threshold"):
            Threshold.parse(bad)


def test_unknown_metric_named_with_a_suggestion():
    with pytest.raises(InputError, match="did you mean 'train.macro_f1'"):
        thresholds_from({"train.macro_f": "1%"})


def test_directions_on_plain_values():
    t = Threshold.parse("0.01")
    f1 = CATALOGUE["train.macro_f1"]
    assert judge(f1, t, 0.80, 0.785)[0] is True  # dropped 0.015 > 0.01
    assert judge(f1, t, 0.80, 0.795)[0] is False  # within 0.01
    assert judge(f1, t, 0.80, 0.90)[:2] == (False, True)  # improvement
    lat = CATALOGUE["speed.peak_memory_mb"]
    assert judge(lat, Threshold.parse("10%"), 100.0, 111.0)[0] is True  # lower is better: grew 11%
    assert judge(lat, Threshold.parse("10%"), 100.0, 89.0)[:2] == (False, True)
    params = CATALOGUE["profile.params"]
    assert judge(params, Threshold.parse("exact"), 100, 101)[0] is True
    assert judge(params, Threshold.parse("exact"), 100, 100)[0] is False


def test_a_timing_is_judged_on_the_per_run_value_not_on_pooled_batches():
    """The unit is the run: one run's batches are not independent, so a committed-baseline comparison
    judges the run's median against the threshold (widened by the baseline runs' spread), with no test on
    pooled batch samples (a level shift between two processes would always look significant there)."""
    thr = CATALOGUE["speed.throughput_img_s"]
    assert judge(thr, Threshold.parse("10%"), 100.0, 70.0)[0] is True
    assert judge(thr, Threshold.parse("10%"), 100.0, 92.0)[0] is False
    # three baseline runs spread +-8%: a 12% drop is within twice that spread
    regression, _, allowed, note = judge(thr, Threshold.parse("10%"), 100.0, 88.0, between_runs=(0.08, 3))
    assert regression is False and allowed == pytest.approx(16.0) and "spread of 3 baseline runs" in note


def test_between_run_spread_exact():
    assert between_run_spread([100.0]) == 0.0
    assert between_run_spread([100.0, 110.0, 90.0]) == pytest.approx(0.10)  # median 100, largest deviation 10
    assert between_run_spread([50.0, 60.0]) == pytest.approx(5 / 55)


def test_a_baseline_of_several_runs_widens_to_their_spread_and_uses_their_median():
    a = _cell()

    def run(img_s, f1=0.80):
        r = _result(a, f1=f1)
        r.measurements["train"]["train_img_s"] = img_s
        return r

    thresholds = thresholds_from({"train.train_img_s": "10%"})
    # three baseline runs: 100, 110, 90 img/s -> median 100, spread 10% -> allowed 2 x 10% = 20%
    repeats = [[run(110.0)], [run(90.0)]]

    def finding(current, metric="train.train_img_s", reps=repeats):
        comp = compare_results([run(100.0)], [current], thresholds, baseline_repeats=reps)
        return next(f for f in comp.findings if f.metric == metric)

    f = finding(run(85.0))  # 15% slower: beyond the 10% threshold, within the baseline runs' spread
    assert (f.baseline, f.allowed, f.regression) == (100.0, pytest.approx(20.0), False)
    assert "3 baseline runs" in f.note and "10.0%" in f.note
    assert finding(run(79.0)).regression is True  # 21% slower: beyond twice the spread
    assert finding(run(85.0), reps=[]).regression is True  # one baseline run: the plain 10% holds
    # the baseline value is the median of the runs, not the first run's
    assert finding(run(100.0), reps=[[run(120.0)], [run(130.0)]]).baseline == 120.0
    # a deterministic metric has no spread: F1 keeps its absolute threshold
    f1 = finding(run(100.0, f1=0.78), metric="train.macro_f1")
    assert f1.regression is True and f1.allowed == pytest.approx(0.01)


def test_matched_by_id_not_by_row_order():
    a, b = _cell("resnet18"), _cell("mobilenet_v2")
    base = [_result(a, f1=0.80), _result(b, f1=0.60)]
    cur = [_result(b, f1=0.60), _result(a, f1=0.80)]  # same numbers, other order
    comp = compare_results(base, cur, thresholds_from({}))
    assert not comp.regressed and len(comp.findings) == 2 * 6


def test_findings_lower_f1_slower_new_missing_failed():
    a, b, c, d = _cell("resnet18"), _cell("mobilenet_v2"), _cell("vgg16"), _cell("vit_small_patch16_224")
    base = [_result(a), _result(b), _result(c)]
    slow = tuple(s * 1.5 for s in (0.010, 0.011, 0.010, 0.012, 0.010))
    cur = [_result(a, f1=0.70), _result(b, samples=slow), _result(d), _result(c, status="failed")]
    cur[3].reason = "RuntimeError: boom"
    comp = compare_results(base, cur, thresholds_from({}))
    regs = {(f.cell_id, f.metric) for f in comp.regressions}
    assert (a.id, "train.macro_f1") in regs and (a.id, "train.accuracy") in regs
    assert (b.id, "speed.throughput_img_s") in regs and (b.id, "speed.latency_median_ms") in regs
    assert comp.new_cells == [d.id] and comp.missing_cells == []
    assert comp.failed_cells == [{"id": c.id, "label": c.label(), "reason": "RuntimeError: boom"}]
    assert comp.regressed


QUIET_REFS = (0.0020, 0.0021, 0.0020, 0.0022, 0.0020)


def test_busy_reason_exact_on_hand_made_reference_samples():
    assert busy_reason(list(QUIET_REFS), [0.0021, 0.0020, 0.0022, 0.0021, 0.0020]) is None
    # median 2.0 ms -> 3.2 ms: 1.6x slower than the baseline's reference, over the 1.5x limit
    assert (
        busy_reason(list(QUIET_REFS), [0.0032] * 5)
        == "machine busy: the reference workload ran 1.6x slower than in the baseline"
    )
    assert busy_reason(list(QUIET_REFS), [0.0029] * 5) is None  # 1.45x: still judged
    # same median, but quartiles 2.0 and 3.2 ms: IQR 1.2 / median 2.0 = 60%
    spread = [0.0010, 0.0020, 0.0020, 0.0020, 0.0032, 0.0032, 0.0040]
    assert (
        busy_reason(list(QUIET_REFS), spread)
        == "machine busy: the reference workload's repeats spread 60% (interquartile range over median)"
    )
    assert busy_reason([0.002, 0.002], [0.01] * 5) is None  # too few samples to say


def test_timings_of_a_cell_timed_on_a_busy_machine_are_not_judged_and_make_it_inconclusive():
    a, b = _cell("resnet18"), _cell("mobilenet_v2")
    samples = (0.010, 0.011, 0.010, 0.012, 0.010)
    slow = tuple(s * 8 for s in samples)
    base = [_result(a, samples=samples, refs=QUIET_REFS), _result(b, samples=samples, refs=QUIET_REFS)]
    # a: the model 8x slower while the reference beside it ran 8x slower too (a shared machine);
    # b: the model 8x slower beside a quiet reference (a real slowdown), and a lower F1
    cur = [
        _result(a, samples=slow, refs=tuple(r * 8 for r in QUIET_REFS)),
        _result(b, samples=slow, refs=QUIET_REFS, f1=0.70),
    ]
    comp = compare_results(base, cur, thresholds_from({}))
    regs = {(f.cell_id, f.metric) for f in comp.regressions}
    assert {(b.id, "speed.latency_median_ms"), (b.id, "speed.latency_vs_reference"), (b.id, "train.macro_f1")} <= regs
    assert not any(cid == a.id for cid, _ in regs)
    a_timings = [f for f in comp.findings if f.cell_id == a.id and CATALOGUE[f.metric].timing]
    assert a_timings and all(
        f.note == "not judged: machine busy: the reference workload ran 8.0x slower than in the baseline"
        for f in a_timings
    )
    assert all(not f.judged for f in a_timings)
    assert comp.inconclusive == [
        f"cell {a.id} ({a.label()}): machine busy: the reference workload ran 8.0x slower than in the baseline; "
        "its timings cannot be judged (run again on a quiet machine, or gate with `bench gate`, which measures "
        "both sides on one machine)"
    ]
    assert comp.verdict == "regression"  # b's slowdown and F1 drop: a regression outranks the inconclusive part
    assert compare_results(base[:1], cur[:1], thresholds_from({})).verdict == "inconclusive"  # never a pass
    # a's F1 drop is still caught on the busy cell: only timings are spared
    cur[0].measurements["train"]["macro_f1"] = 0.5
    assert (a.id, "train.macro_f1") in {
        (f.cell_id, f.metric) for f in compare_results(base, cur, thresholds_from({})).regressions
    }


def test_hardware_independent_only_skips_timings():
    a = _cell()
    slow = tuple(s * 2 for s in (0.010, 0.011, 0.010, 0.012, 0.010))
    comp = compare_results(
        [_result(a)], [_result(a, samples=slow)], thresholds_from({}), hardware_independent_only=True
    )
    assert not comp.regressed
    assert {f.metric for f in comp.findings} == {"train.macro_f1", "train.accuracy", "profile.params", "profile.macs"}


def test_training_metrics_on_other_hardware_are_judged_coarsely_and_say_so():
    # the nightly baseline (AMD EPYC) rerun on an Intel Xeon moved macro-F1 by up to +0.178 with nothing
    # changed: on other hardware a 0.2 drop is drift, a 0.45 one (a collapse) is still a regression
    a = _cell()
    base = [_result(a, f1=0.80)]
    drift, collapse = [_result(a, f1=0.60)], [_result(a, f1=0.35)]
    same = compare_results(base, drift, thresholds_from({}))
    assert {f.metric for f in same.regressions} == {"train.macro_f1", "train.accuracy"}  # same machine: tight
    other = compare_results(base, drift, thresholds_from({}), hardware_independent_only=True)
    assert not other.regressed
    f1 = next(f for f in other.findings if f.metric == "train.macro_f1")
    assert (f1.threshold, f1.allowed) == ("0.35", 0.35) and f1.note.startswith("other hardware")
    assert next(f for f in other.findings if f.metric == "train.accuracy").threshold == "0.25"
    assert next(f for f in other.findings if f.metric == "profile.params").note == ""  # still exact
    fallen = compare_results(base, collapse, thresholds_from({}), hardware_independent_only=True)
    assert {f.metric for f in fallen.regressions} == {"train.macro_f1", "train.accuracy"}
    # a suite that allows more than the coarse default keeps its own threshold
    loose = compare_results(base, collapse, thresholds_from({"train.macro_f1": "0.5"}), hardware_independent_only=True)
    assert "train.macro_f1" not in {f.metric for f in loose.regressions}


def _write_run(folder, results, env=None, regression=None):
    store = RunStore.create(folder)
    for r in results:
        store.write_cell(r)
    store.write_plan([r.cell for r in results])
    store.write_json(
        "env.json", env or {"cpu_model": "X", "cpu_cores_usable": 2, "device": "cpu", "gpu_name": None, "torch": "2"}
    )
    store.write_json("suite.resolved.json", {"name": "t", "regression": regression or {}})
    return folder


def test_cli_compare_exit_codes_markdown_json_and_baseline(tmp_path):
    a = _cell()
    base = _write_run(tmp_path / "base", [_result(a)])
    same = _write_run(tmp_path / "same", [_result(a)])
    worse = _write_run(tmp_path / "worse", [_result(a, f1=0.70)])
    runner = CliRunner()
    saved = runner.invoke(app, ["baseline", "save", str(base), "--name", "unit", "--root", str(tmp_path / "baselines")])
    assert saved.exit_code == 0, saved.output
    assert json.loads((tmp_path / "baselines" / "unit" / "baseline.json").read_text())["cells"] == 1

    ok = runner.invoke(app, ["compare", "unit", str(same), "--baselines-root", str(tmp_path / "baselines")])
    assert ok.exit_code == 0, ok.output
    md, js = tmp_path / "summary.md", tmp_path / "c.json"
    bad = runner.invoke(app, ["compare", str(base), str(worse), "--markdown", str(md), "--json", str(js)])
    assert bad.exit_code == 1
    assert f"{a.id}:train.macro_f1" in bad.output
    assert "REGRESSION" in md.read_text() and "train.macro_f1" in md.read_text()
    assert json.loads(js.read_text())["regressed"] is True
    missing = runner.invoke(app, ["compare", str(tmp_path / "nope"), str(same)])
    assert missing.exit_code == 2

    # a baseline of several runs keeps the others as repeats; a run of another suite is refused
    multi = runner.invoke(
        app, ["baseline", "save", str(base), str(same), "--name", "multi", "--root", str(tmp_path / "baselines")]
    )
    assert multi.exit_code == 0, multi.output
    assert (tmp_path / "baselines" / "multi" / "repeats" / "1" / "cells" / f"{a.id}.json").is_file()
    assert json.loads((tmp_path / "baselines" / "multi" / "baseline.json").read_text())["repeats"] == [str(same)]
    assert (
        runner.invoke(app, ["compare", "multi", str(same), "--baselines-root", str(tmp_path / "baselines")]).exit_code
        == 0
    )
    other = _write_run(tmp_path / "other", [_result(_cell("mobilenet_v2"))])
    refused = runner.invoke(
        app, ["baseline", "save", str(base), str(other), "--name", "x", "--root", str(tmp_path / "baselines")]
    )
    assert refused.exit_code == 2 and "shares no cell" in refused.output


def test_cli_compare_prints_a_metric_whose_threshold_is_off(tmp_path):
    """'off' allows an infinite change: the table shows 'off' (this crashed the console table once)."""
    a = _cell()
    base = _write_run(tmp_path / "base", [_result(a)], regression={"speed.throughput_img_s": "off"})
    slow = tuple(s * 3 for s in (0.010, 0.011, 0.010, 0.012, 0.010))
    worse = _write_run(tmp_path / "worse", [_result(a, samples=slow)], regression={"speed.throughput_img_s": "off"})
    res = CliRunner().invoke(app, ["compare", str(base), str(worse), "--markdown", str(tmp_path / "c.md")])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    row = next(line for line in res.output.splitlines() if "speed.throughput_img_s" in line)
    assert "off" in row and "REGRESSION" not in row, row
    assert "speed.latency_median_ms" in res.output  # the other timing metrics are still judged


def test_format_number_infinity():
    from bench.core.numbers import format_number

    assert (format_number(math.inf), format_number(-math.inf), format_number(1234.5), format_number(0.01234)) == (
        "∞",
        "-∞",
        "1,234",
        "0.0123",
    )


def test_cli_compare_on_other_hardware_compares_only_independent_metrics(tmp_path):
    a = _cell()
    slow = tuple(s * 2 for s in (0.010, 0.011, 0.010, 0.012, 0.010))
    base = _write_run(tmp_path / "base", [_result(a)])
    other = _write_run(
        tmp_path / "other",
        [_result(a, samples=slow)],
        env={"cpu_model": "Y", "cpu_cores_usable": 8, "device": "cpu", "gpu_name": None, "torch": "2"},
    )
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(base), str(other)])
    assert res.exit_code == 3 and "hardware" in res.output and "inconclusive" in res.output  # never fails open
    assert runner.invoke(app, ["compare", str(base), str(other), "--inconclusive-ok"]).exit_code == 0
    forced = runner.invoke(app, ["compare", str(base), str(other), "--allow-hardware-mismatch"])
    assert forced.exit_code == 1


def test_regression_section_of_a_suite_is_validated(suite_file):
    from bench.suite.load import load_suite

    path = suite_file("name: x\nmodels: [resnet18]\nregression:\n  train.macro_f1: lots\n")
    with pytest.raises(InputError, match="bad threshold"):
        load_suite(path)


def test_a_run_from_before_the_held_out_test_set_is_not_compared_with_one_after(tmp_path):
    """Runs made before the three-way split reported the validation images that also chose the checkpoint
    (their train results carry no `evaluated_on`); comparing or reporting them beside runs that report the
    held-out test set is refused, exit 2, saying why, in both directions."""
    a = _cell()
    old = _write_run(tmp_path / "old", [_result(a)])
    new_result = _result(a)
    new_result.measurements["train"]["evaluated_on"] = "test"
    new = _write_run(tmp_path / "new", [new_result])
    runner = CliRunner()
    for base, current in ((old, new), (new, old)):
        refused = runner.invoke(app, ["compare", str(base), str(current)])
        assert refused.exit_code == 2, refused.output
        assert "different image sets" in refused.output and "validation" in refused.output and "test" in refused.output
    report = runner.invoke(app, ["report", str(old), str(new)])
    assert report.exit_code == 2 and "different image sets" in report.output
    # runs of one kind compare as before
    assert runner.invoke(app, ["compare", str(new), str(new)]).exit_code == 0


@pytest.mark.parametrize(
    ("key", "changed"),
    [("torch_threads", 1), ("allocator", {"setting": "default"}), ("timm", "1.0.99")],
)
def test_a_thread_count_allocator_or_timm_change_is_other_hardware_and_inconclusive(tmp_path, key, changed):
    """One thread instead of two doubled resnet18's latency and passed as 'machine busy': the thread count,
    the allocator setting and timm's version are in the hardware key, so timings are not compared and the
    gate ends at 3 (inconclusive), naming what differs."""
    a = _cell()
    env = {
        "cpu_model": "X",
        "cpu_cores_usable": 2,
        "device": "cpu",
        "gpu_name": None,
        "torch": "2",
        "timm": "1.0.20",
        "torch_threads": 2,
        "allocator": {"setting": "pinned"},
    }
    base = _write_run(tmp_path / "base", [_result(a)], env=env)
    slow = tuple(s * 2 for s in (0.010, 0.011, 0.010, 0.012, 0.010))
    cur = _write_run(tmp_path / "cur", [_result(a, samples=slow)], env={**env, key: changed})
    res = CliRunner().invoke(app, ["compare", str(base), str(cur)])
    assert res.exit_code == 3 and key in res.output and "inconclusive" in res.output, res.output
    same = _write_run(tmp_path / "same", [_result(a)], env=env)
    assert CliRunner().invoke(app, ["compare", str(base), str(same)]).exit_code == 0
