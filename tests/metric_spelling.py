"""Where a metric's name is spelled as a string in bench's code: the catalogue must be the only module.

Used by tests/test_architecture.py; run as a script it lists the offending places."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

from bench.core.cell import Cell
from bench.measure.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE_FILE = ROOT / "bench" / "measure" / "catalogue.py"


def metric_paths() -> set[str]:
    return {m.path for m in CATALOGUE.values()}


def metric_names() -> set[str]:
    """Every metric's key and dotted path, but keys that are also a cell's config field (batch_size)."""
    config = {f.name for f in fields(Cell)}
    return {m.key for m in CATALOGUE.values() if m.key not in config} | {m.path for m in CATALOGUE.values()}


def spelled() -> list[str]:
    names = metric_names()
    inside = re.compile("|".join(re.escape(p) + r"(?![A-Za-z0-9_])" for p in sorted(metric_paths())))
    found = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        if path == CATALOGUE_FILE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                # the name itself, or a dotted path inside a longer string ("train.macro_f1.mean")
                if node.value in names or inside.search(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return found


if __name__ == "__main__":
    print("\n".join(spelled()))
