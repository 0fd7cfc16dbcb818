"""The shape of the code, checked: layers (import-linter), no import cycle, deferred imports say why, one
metric catalogue, and a suite validated without torch.

docs/architecture.md describes the layers; pyproject.toml declares them as an import-linter contract.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from metric_spelling import spelled  # noqa: E402

HEAVY = ("torch", "torchvision", "timm", "scipy", "sklearn", "matplotlib", "pandas")


def test_import_linter_layer_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "1 kept, 0 broken" in done.stdout


def _import_graph() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports (anywhere in the file, as import-linter counts them)."""
    graph: dict[str, set[str]] = {}
    modules = {}
    for path in (ROOT / "bench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    for name, path in modules.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = (
                    node.module
                    if node.level == 0
                    else ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], node.module])
                )
                # `from pkg import module` depends on the module; `from pkg import name` on pkg (as grimp counts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            deps.update(t for t in targets if t in modules and t != name)
        graph[name] = deps
    return graph


def test_the_import_graph_has_no_cycle():
    graph = _import_graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle.extend(stack[stack.index(dep) :] + [node, dep] if dep in stack else [node, dep])
                return True
            if dep not in state and visit(dep, [*stack, node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(n, []) for n in sorted(graph) if n not in state), " -> ".join(cycle)


def test_in_function_imports_of_bench_say_why():
    """An import of a bench module inside a function only defers a heavy dependency, and says so."""
    bad = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                names = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom) and node.module
                    else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
                )
                if any(n.startswith("bench") for n in names) and "# deferred:" not in lines[node.lineno - 1]:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad


def test_metric_names_are_spelled_only_in_the_catalogue():
    assert spelled() == []


def test_the_spelling_check_finds_a_spelled_metric(tmp_path, monkeypatch):
    """The check above can fail: a module spelling a metric's path is found."""
    import metric_spelling

    fake = tmp_path / "bench" / "x.py"
    fake.parent.mkdir()
    fake.write_text('KEY = "speed.throughput_img_s"\nOTHER = f"{1}train.macro_f1.mean"\n')
    monkeypatch.setattr(metric_spelling, "ROOT", tmp_path)
    assert [s.split(": ", 1)[1] for s in metric_spelling.spelled()] == [
        "'speed.throughput_img_s'",
        "'train.macro_f1.mean'",
    ]


def test_validating_and_planning_a_suite_imports_no_heavy_library():
    code = (
        "import sys, json; from bench.suite import expand, load_suite; import bench.cli; "
        "cells = expand(load_suite('suites/smoke.yaml')); "
        f"print(json.dumps([len(cells), [m for m in {HEAVY!r} if m in sys.modules]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == [6, []]


def test_a_timm_name_outside_the_catalogue_imports_torch_only_then(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels: ['timm:resnet10t']\nmatrix: {resolution: [32]}\nmeasure: [profile]\n")
    code = f"import sys; from bench.suite import expand, load_suite; expand(load_suite({str(suite)!r})); print('timm' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip() == "True"


def test_the_extension_points_are_importable_from_bench():
    import bench

    for name in ("register_model", "register_measurement", "register_section", "register_dataset", "register_metric"):
        assert callable(getattr(bench, name)), name
    with pytest.raises(AttributeError):
        bench.no_such_thing  # noqa: B018
