"""The nightly workflow is linted (GitHub's workflow schema via check-jsonschema, and zizmor's audits),
both linters are shown to fail on broken workflows, and the workflow runs the same local command."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def _lint(path: Path) -> list[subprocess.CompletedProcess]:
    out = []
    for tool, args in (
        ("check-jsonschema", ["--builtin-schema", "vendor.github-workflows", str(path)]),
        ("zizmor", ["--offline", "--no-progress", str(path)]),
    ):
        exe = shutil.which(tool)
        if exe is None:
            pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
        out.append(subprocess.run([exe, *args], capture_output=True, text=True, timeout=120))
    return out


def test_nightly_workflow_passes_the_linters():
    for proc in _lint(WORKFLOW):
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_linters_catch_broken_workflows(tmp_path):
    data = yaml.safe_load(WORKFLOW.read_text())
    # schema: a job without runs-on
    broken = dict(data)
    broken["jobs"] = {"nightly": {k: v for k, v in data["jobs"]["nightly"].items() if k != "runs-on"}}
    schema_bad = tmp_path / "schema_bad.yml"
    schema_bad.write_text(yaml.safe_dump(broken))
    assert _lint(schema_bad)[0].returncode != 0
    # zizmor: untrusted input expanded into a shell
    injected = WORKFLOW.read_text().replace(
        "run: bash .ci/nightly", 'run: echo "${{ github.event.head_commit.message }}" && bash .ci/nightly'
    )
    inj = tmp_path / "injection.yml"
    inj.write_text(injected)
    assert _lint(inj)[1].returncode != 0


def test_workflow_runs_the_documented_local_command():
    data = yaml.safe_load(WORKFLOW.read_text())
    steps = data["jobs"]["nightly"]["steps"]
    assert [s["run"] for s in steps if "run" in s] == ["bash .ci/nightly"]
    triggers = data[True] if True in data else data["on"]  # PyYAML reads the key `on` as True
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    assert "bash .ci/nightly" in (ROOT / "README.md").read_text()
    assert (ROOT / "results" / "baselines" / "nightly" / "baseline.json").is_file()
