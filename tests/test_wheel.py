"""The wheel works: built from this checkout, installed outside it, it runs a suite and renders its report.

The shipped suites and report templates live at the top of the repository and are packaged as
bench.suites / bench.report_templates (pyproject.toml); an installed bench must find them without the
checkout. The wheel is installed with --no-deps into a folder of its own, so torch is not downloaded
again: the dependencies come from this environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_bench_package_is_declared():
    """pyproject.toml lists bench's packages by hand (to map the shipped folders in): none may be missing."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bench").rglob("__init__.py")}
    assert found <= _declared_packages()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    isolation = []
    try:
        import setuptools

        if int(setuptools.__version__.split(".")[0]) >= 68:  # pyproject's build requirement is met here
            isolation = ["--no-build-isolation"]
    except ImportError:
        pass
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("bench-*.whl")
    return built


def test_wheel_carries_the_suites_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "bench/suites/smoke.yaml" in names and "bench/suites/seeds/artists.yaml" in names
    assert "bench/report_templates/report.html.j2" in names and "bench/report_templates/sections/header.md.j2" in names
    assert "bench/cli/app.py" in names and not any(n.startswith(("tests/", "suites/")) for n in names)


def test_installed_wheel_runs_smoke_with_its_report_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bench.cli, bench.core.resources as r; "
            "print(bench.cli.__file__); print(r.shipped_dir('report_templates'))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    code, templates = where.stdout.split()
    assert code.startswith(str(target)) and templates.startswith(str(target)), where.stdout
    assert (Path(templates) / "report.html.j2").is_file()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "run", "smoke", "--out", str(elsewhere / "run")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (elsewhere / "run" / "report.html").stat().st_size > 10_000
    assert "smoke" in (elsewhere / "run" / "report.md").read_text()
    assert len(list((elsewhere / "run" / "cells").glob("*.json"))) == 6
