"""Suites, CSVs, weights and results come from other people: loading them never runs their code, data
paths stay inside the data root, user strings in the HTML report are inert, and no shell is ever used."""

from __future__ import annotations

import ast
import csv
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import bench
from bench.cli import app
from bench.core.errors import InputError
from bench.data import load_samples
from bench.execution.cell import run_cell
from bench.models.builders import build_model, load_weights
from bench.suite.expand import expand
from bench.suite.load import load_suite
from tests.test_bad_inputs import _assert_input_error, _invoke


class _Evil:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(tmp_path: Path) -> dict[str, Path]:
    marker = tmp_path / "PWNED"
    raw = tmp_path / "evil_raw.pth"  # a bare pickle (protocol 2), the classic .pth attack
    raw.write_bytes(pickle.dumps({"fc.weight": _Evil(marker)}, protocol=2))
    zipped = tmp_path / "evil_zip.pth"  # torch.save's zip format with the payload inside a "state dict"
    torch.save({"fc.weight": _Evil(marker)}, zipped)
    return {"raw": raw, "zip": zipped, "marker": marker}


@pytest.mark.parametrize("kind", ["raw", "zip"])
def test_malicious_pickle_weights_refused_at_plan_and_never_run(tmp_path, kind):
    files = _evil_files(tmp_path)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: t\nmodels:\n  - {{name: resnet18, weights: {files[kind].name}}}\n")
    _assert_input_error(
        _invoke("plan", suite),
        f"{suite}:3:",
        "models[0].weights",
        f"{files[kind].name}: refused to load weights: not plain tensors",
        "GLOBAL posix.system",
        "weights_only=True",
    )
    assert not files["marker"].exists()


def test_malicious_pickle_never_runs_when_a_cell_loads_it(tmp_path):
    """The run-time path (a resumed plan, a file swapped after planning): the cell fails, nothing runs."""
    files = _evil_files(tmp_path)
    with pytest.raises(InputError, match="refused to load weights: not plain tensors"):
        load_weights(build_model("resnet18", num_classes=10), files["raw"])
    good = tmp_path / "good.pth"
    torch.save(build_model("resnet18", num_classes=10).state_dict(), good)
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: t\nmodels:\n  - {name: resnet18, weights: good.pth}\nnum_classes: 10\nmeasure: [profile]\nmatrix: {resolution: [32]}\n"
    )
    (cell,) = expand(load_suite(suite))
    good.write_bytes(files["zip"].read_bytes())  # swapped after planning
    result = run_cell(cell, torch.device("cpu"))
    assert (
        result.status == "failed" and result.reason.startswith("build: ") and "refused to load weights" in result.reason
    )
    assert not files["marker"].exists()


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system", "!!python/name:os.system", "!!python/object/new:os.system"]
)
def test_yaml_python_tags_rejected(tmp_path, tag):
    marker = tmp_path / "pwned"
    suite = tmp_path / "s.yaml"
    suite.write_text(f'name: t\nmodels: [resnet18]\ndescription: {tag} ["touch {marker}"]\n')
    _assert_input_error(_invoke("plan", suite), f"{suite}:3:", "YAML tag not allowed", "remove the '!' tag")
    assert not marker.exists()


@pytest.mark.parametrize("bad", ["../outside.jpg", "img/../../outside.jpg", "ABSOLUTE", "img/link.jpg"])
def test_data_paths_cannot_escape_the_root(tmp_path, bad):
    from PIL import Image

    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    for i in range(2):
        Image.new("RGB", (8, 8)).save(root / f"img/{i}.jpg")
    (root / "img/link.jpg").symlink_to(outside)  # a symlink inside the root pointing out of it
    rel = str(outside) if bad == "ABSOLUTE" else bad
    with open(root / "data.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(
            [("id", "img_path", "artist"), ("0", "img/0.jpg", "a"), ("1", "img/1.jpg", "b"), ("2", rel, "a")]
        )
    with pytest.raises(InputError) as err:
        load_samples("csv", {"csv": "root/data.csv"}, tmp_path)
    assert err.value.line == 4 and err.value.file.endswith("data.csv")
    assert f"image path '{rel}' escapes the data root {root}" in str(err.value)


def test_user_strings_in_the_html_report_are_inert(tmp_path):
    """A run directory from someone else, its suite name, description and a cell's reason edited to carry
    markup: the report shows them as text."""
    payload = "<script>alert(1)</script>"
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: xss\nmodels: [resnet18, {name: mobilenet_v2, kwargs: {no_such_argument: 1}}]\n"
        "matrix: {resolution: [32]}\nmeasure: [profile]\n"
    )
    run_dir = tmp_path / "run"
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(run_dir), "--no-report"]).exit_code == 1
    resolved = json.loads((run_dir / "suite.resolved.json").read_text())
    resolved.update(name=payload, description=f"desc {payload}")
    (run_dir / "suite.resolved.json").write_text(json.dumps(resolved))
    for cell_file in (run_dir / "cells").glob("*.json"):
        data = json.loads(cell_file.read_text())
        if data["status"] == "failed":
            data["reason"] = f"build: {payload}"
            cell_file.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["report", str(run_dir), "--format", "html"])
    assert result.exit_code == 0, result.output
    html = (run_dir / "report.html").read_text()
    assert "<script>alert(1)" not in html and "alert(1)</script>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # the name and the failed cell's reason


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


def test_no_shell_anywhere_in_the_package():
    """No subprocess through a shell, no os.system/os.popen, and every subprocess command is a list."""
    package = Path(bench.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) > 30
    problems, subprocess_calls = [], 0
    for path in files:
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(package)}:{node.lineno}"
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where}: shell={ast.unparse(kw.value)}")
            if owner == "os" and (name in ("system", "popen") or name.startswith(("exec", "spawn"))):
                problems.append(f"{where}: os.{name}")
            if owner == "subprocess":
                subprocess_calls += 1
                if node.args and not isinstance(node.args[0], (ast.List, ast.Tuple)):
                    problems.append(f"{where}: subprocess.{name} with a non-list command {ast.unparse(node.args[0])}")
    assert problems == []
    assert subprocess_calls >= 1  # the scan does see the package's subprocess calls (git, lscpu, ...)


def test_class_names_with_dollars_render_as_written_in_the_figures():
    """`$\\alpha$_test` reaches matplotlib as plain text (mathtext drew it as α_test) and `$\\notacommand$_x`
    renders (mathtext raised ValueError, breaking the report's figures)."""
    import io as _io

    from PIL import Image as _Image

    from bench.report.plots import confusion, per_class_vs_frequency

    classes = ["$\\alpha$_test", "$\\notacommand$_x", "plain"]  # the second made mathtext raise ValueError
    for png in (
        per_class_vs_frequency([30, 20, 10], [0.5, 0.7, 0.9], classes, "per class"),
        confusion([[3, 1, 0], [0, 4, 1], [1, 0, 5]], classes, "confusion"),
    ):
        assert _Image.open(_io.BytesIO(png)).size[0] > 100


def test_worker_artifact_names_are_plain_names_of_the_tasks_cells():
    from bench.execution.executors import checked_artifact

    assert checked_artifact("abc", "best.pt", {"abc"}) == ("abc", "best.pt")
    for cell_id, name in (("abc", "../x"), ("abc", "a/b"), ("abc", ".."), ("abc", ""), ("other", "best.pt")):
        with pytest.raises(ValueError, match="refused a worker's artifact"):
            checked_artifact(cell_id, name, {"abc"})


def test_the_isolation_server_does_not_import_from_the_working_directory(tmp_path, monkeypatch):
    """A `torch.py` in the working directory is never imported by the fork server that runs isolated cells."""
    import torch

    from bench.execution.sweep import run_cells
    from bench.store.run_store import RunStore
    from tests.cell_factory import make_cell

    (tmp_path / "torch.py").write_text("raise SystemExit('the working directory was imported from')\n")
    monkeypatch.chdir(tmp_path)
    cell = make_cell(model="small_cnn", family="small_cnn", resolution=16, batch_size=2, measure=("profile",))
    summary = run_cells([cell], RunStore.create(tmp_path / "run"), torch.device("cpu"), isolation="process")
    assert summary.results[0].status == "ok", summary.results[0].reason
    assert summary.results[0].isolation == "process"
