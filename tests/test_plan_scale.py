"""A large plan stays readable: 10,000 cells print a per-model summary, not 10,000 rows, and `--json` lists
them all. (How long it takes is bench's own figure, in docs/measurements-log.md, not a wall-clock assert.)"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bench.cli import app

SUITE = """
name: big
models: [resnet18, resnet34, resnet50, efficientnet_b0, efficientnet_b1, mobilenet_v2, vgg16, wide_resnet50_2,
         vit_small_patch16_224, efficientnet_b2]
matrix:
  batch_size: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
  resolution: [64, 96, 128, 160, 192, 224, 256, 288, 320, 352]
  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
measure: [profile, speed]
"""


def test_a_10000_cell_plan_is_summarised_and_listed_in_json(suite_file):
    path = str(suite_file(SUITE))
    runner = CliRunner()
    table = runner.invoke(app, ["plan", path, "--no-estimate"])
    assert table.exit_code == 0, table.output
    assert "10000 cells" in table.output and "summarised per model" in table.output
    assert table.output.count("│ resnet18 ") == 1 and len(table.output.splitlines()) < 40
    listed = runner.invoke(app, ["plan", path, "--no-estimate", "--json"])
    doc = json.loads(listed.output)
    assert len(doc["cells"]) == 10000 and len({c["id"] for c in doc["cells"]}) == 10000
