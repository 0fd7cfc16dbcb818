"""`bench export github-benchmark` on the committed nightly baseline, against github-action-benchmark's
documented format for its custom tools (README, "Examples" -> customSmallerIsBetter / customBiggerIsBetter):
a JSON list of {name: string, unit: string, value: number, range?: string, extra?: string}."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.metric import HIGHER
from bench.measure.catalogue import gated

NIGHTLY = Path(__file__).resolve().parents[1] / "results" / "baselines" / "nightly"
# the action's documented example of a custom tool's file, as its README gives it
DOCUMENTED_EXAMPLE = [
    {"name": "My Custom Smaller Is Better Benchmark - CPU Load", "unit": "Percent", "value": 50},
    {
        "name": "My Custom Smaller Is Better Benchmark - Memory Used",
        "unit": "Megabytes",
        "value": 100,
        "range": "3",
        "extra": "Value for Tooltip: 25\nOptional Num #2: 100\nAnything Else!",
    },
]
REQUIRED = {"name": str, "unit": str, "value": (int, float)}
OPTIONAL = {"range": str, "extra": str}


def _check_format(entries) -> None:
    """The fields and types of the action's custom format (its BenchmarkResult), pinned."""
    assert isinstance(entries, list) and entries
    for e in entries:
        assert set(REQUIRED) <= set(e) <= set(REQUIRED) | set(OPTIONAL), e
        for key, kind in (REQUIRED | OPTIONAL).items():
            if key in e:
                assert isinstance(e[key], kind) and not isinstance(e[key], bool), (key, e)
        assert math.isfinite(e["value"]) and e["name"] and e["unit"]
    assert len({e["name"] for e in entries}) == len(entries), "names must be unique: the action charts by name"


def test_the_documented_example_passes_the_pinned_check():
    _check_format(DOCUMENTED_EXAMPLE)


def test_nightly_baseline_as_github_benchmark_json(tmp_path):
    run_dir = tmp_path / "nightly"
    shutil.copytree(NIGHTLY, run_dir)
    out = CliRunner().invoke(app, ["export", "github-benchmark", str(run_dir), "--out", str(tmp_path / "gh")])
    assert out.exit_code == 0, out.output
    bigger = json.loads((tmp_path / "gh" / "github-benchmark-bigger.json").read_text())
    smaller = json.loads((tmp_path / "gh" / "github-benchmark-smaller.json").read_text())
    _check_format(bigger)
    _check_format(smaller)
    cells = [json.loads(p.read_text()) for p in sorted((run_dir / "cells").glob("*.json"))]
    expected = {}
    for cell in cells:  # every gated metric of every cell, in the file of its direction, value as recorded
        for path, spec in gated().items():
            value = (cell["measurements"].get(spec.measurement) or {}).get(spec.key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                expected[(cell["id"], path)] = ("bigger" if spec.direction == HIGHER else "smaller", value, spec.unit)
    got = {}
    for side, entries in (("bigger", bigger), ("smaller", smaller)):
        for e in entries:
            cell_id = e["extra"].splitlines()[0].removeprefix("cell ")
            path = e["name"].rsplit(" ", 1)[1]
            assert f"({cell_id})" in e["name"]
            got[(cell_id, path)] = (side, e["value"], e["unit"])
    assert got == expected
    # a timing's range is half its repeats' interquartile range, in its unit
    timed = [e for e in bigger + smaller if e["name"].endswith(" speed.latency_median_ms")]
    assert len(timed) == len(cells) and all(e["range"].startswith("± ") for e in timed)
    assert all(0 < float(e["range"][2:]) < 10 * e["value"] for e in timed)
