"""`bench cpu-fastpaths` (bench.tools.fastpaths): each variant runs as asked and is reported as a ratio to the
baseline measured beside it. A smoke-sized run; the figures in README come from the full command."""

from __future__ import annotations

import json

import torch

from bench.tools.fastpaths import _runner, measure_fastpaths


def test_variants_run_and_ratios_are_against_the_baseline():
    threads = torch.get_num_threads()
    rows = measure_fastpaths(
        ["resnet18"],
        [32],
        modes=("inference", "train"),
        variants=("baseline", "channels_last", "threads=1", "bf16"),
        rounds=1,
        min_time_s=0.05,
        batch_for=lambda res, mode: 4,
    )
    assert torch.get_num_threads() == threads  # the thread count is put back
    assert len(rows) == 8
    for row in rows:
        assert row.img_s and row.img_s > 0, row
        if row.variant == "baseline":
            assert row.ratio == 1.0
        else:
            assert row.ratio is not None and row.ratio > 0
    json.dumps([r.to_dict() for r in rows])


def test_channels_last_variant_really_runs_channels_last():
    seen = []
    step = _runner("resnet18", 32, "inference", "channels_last", 2)
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, args: (
            seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
            if isinstance(m, torch.nn.Conv2d)
            else None
        )
    )
    try:
        step()
    finally:
        hook.remove()
    assert seen and seen[0]


def test_suite_threads_set_the_run_and_are_recorded(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.suite.expand import expand
    from bench.suite.load import load_suite

    text = "name: t\nmodels: [resnet18]\nmatrix: {resolution: [32]}\nmeasure: [profile]\nisolation: none\n"
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text + "threads: 1\n")
    ids = [c.id for c in expand(load_suite(tmp_path / "a.yaml"))]
    assert [c.id for c in expand(load_suite(tmp_path / "b.yaml"))] == ids  # not part of cell ids
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # so that the suite's 1 is seen to take effect
        result = CliRunner().invoke(
            app, ["run", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "run"), "--no-report"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "run" / "env.json").read_text())["torch_threads"] == 1
    finally:
        torch.set_num_threads(threads)
