"""Every cell id of every profile of every shipped suite is pinned: a refactor must not change what a cell is.

tests/data/expected_cell_ids.json is the contract that resume, baselines and comparisons rely on. It was
written by the code before the package redesign, which left every id as it was; one deliberate change
since: the three-way split (`train.data.test_fraction`, validation 0.2 -> 0.1 and the shipped suites'
fractions) changed the id of every cell that trains, and only those. A deliberate change of ids updates
the file in the same commit and says why, here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.suite import expand, load_suite

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = json.loads((ROOT / "tests" / "data" / "expected_cell_ids.json").read_text())
CASES = [(suite, profile) for suite, profiles in sorted(EXPECTED.items()) for profile in sorted(profiles)]


def test_every_shipped_suite_and_profile_is_pinned():
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "suites").rglob("*.yaml")}
    assert shipped == set(EXPECTED)
    for suite in shipped:
        profiles = yaml.safe_load((ROOT / suite).read_text()).get("profiles") or {}
        assert set(EXPECTED[suite]) == {"", *profiles}, suite


@pytest.mark.parametrize(("suite", "profile"), CASES, ids=[f"{s}:{p or 'default'}" for s, p in CASES])
def test_cell_ids_unchanged(suite, profile, monkeypatch):
    monkeypatch.chdir(ROOT)
    ids = [c.id for c in expand(load_suite(ROOT / suite, profile or None))]
    default = yaml.safe_load((ROOT / suite).read_text()).get("default_profile")
    if not profile and isinstance(default, dict) and default.get("cuda"):  # the file was written on a CPU
        import torch

        if torch.cuda.is_available():
            profile = default["cuda"]
    assert ids == EXPECTED[suite][profile]
