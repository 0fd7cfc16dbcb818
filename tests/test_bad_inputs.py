"""Bad input through the CLI: exit code 2, one line naming file:line, the field and the fix, no traceback.

Every case writes a tiny suite and runs `bench plan` in-process (nothing is measured). With click >= 8.2
`CliRunner` has no `mix_stderr` and `result.output` holds stdout and stderr interleaved (errors go to
stderr); `_output` also appends `result.stderr` in case an older click kept them apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import InputError

runner = CliRunner()


def _invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _output(result) -> str:
    text = result.output
    try:
        stderr = result.stderr
    except ValueError:  # older click with stderr mixed into output
        stderr = ""
    if stderr and stderr not in text:
        text += stderr
    return text


def _assert_input_error(result, *fragments: str) -> str:
    """Exit code exactly 2, no traceback, and every fragment in the output; returns the output."""
    out = _output(result)
    assert result.exit_code == 2, f"exit {result.exit_code}, exception {result.exception!r}\n{out}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    return out


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


# (id, suite text, line of the offending field, field as printed, message fragments)
PLAN_CASES = [
    pytest.param(
        "name: t\nmodels: [resnet18\nmatrix:\n  precision: [fp32]\n",
        3,
        "YAML syntax error",
        ["expected ',' or ']'", "check indentation"],
        id="1-yaml-syntax-unclosed-bracket",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmodles:\n  - resnet18\n",
        3,
        "modles",
        ["unknown key 'modles'", "did you mean 'models'"],
        id="2-unknown-top-level-key",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nnum_classes: many\n",
        3,
        "num_classes",
        ["valid integer", "(got 'many')"],
        id="3a-wrong-type-num_classes",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix: {channels_last: [maybe]}\n",
        3,
        "matrix.channels_last[0]",
        ["valid boolean", "(got 'maybe')"],
        id="3b-wrong-type-channels_last",
    ),
    pytest.param(
        "name: t\nmodels:\n  - resnet18\n  - efficentnet_b0\n",
        4,
        "models[1].name",
        ["unknown model 'efficentnet_b0'", "did you mean 'efficientnet_b0'"],
        id="4-unknown-model",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix:\n  precision: []\n",
        4,
        "matrix.precision",
        ["empty axis"],
        id="6-empty-axis",
    ),
    pytest.param(
        "name: t\nmodels:\n  - name: resnet18\n    weights: nope.pth\n",
        4,
        "models[0].weights",
        ["weights file not found", "nope.pth"],
        id="7-missing-weights-file",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix:\n  precision: [fp32]\nexclude:\n  - model: resnet18\n",
        5,
        "exclude",
        ["the exclude rules remove every cell"],
        id="8-exclude-removes-every-cell",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix:\n  precision: [fp32, fp8]\n",
        4,
        "matrix.precision[1]",
        ["unknown precision 'fp8'", "use one of fp32, bf16, fp16"],
        id="9-unknown-precision",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix:\n  batch_size: [0]\n",
        4,
        "matrix.batch_size[0]",
        ["greater than 0", "(got 0)"],
        id="10a-zero-batch-size",
    ),
    pytest.param(
        "name: t\nmodels:\n  - {name: resnet18, batch_size: -4}\n",
        3,
        "models[0].batch_size",
        ["greater than 0", "(got -4)"],
        id="10b-negative-batch-size",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix:\n  precision: [fp32]\n  precision: [bf16]\n",
        5,
        "duplicate key 'precision'",
        ["(first at line 4)", "keep one of them"],
        id="11-duplicate-key",
    ),
    pytest.param(
        "name: t\nmodels:\n  - {name: resnet18, resoluton: 64}\n",
        3,
        "models[0].resoluton",
        ["unknown key 'resoluton'", "did you mean 'resolution'"],
        id="13-unknown-key-in-model-entry",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmatrix:\n  resolution: [native, 64.5]\n",
        4,
        "matrix.resolution[1]",
        ["resolution must be a positive whole number of pixels (got 64.5)", "e.g. 224, or native"],
        id="14a-resolution-not-an-int",
    ),
    pytest.param(
        "name: t\nmodels:\n  - {name: resnet18, resolution: big}\n",
        3,
        "models[0].resolution",
        ["resolution must be a positive whole number of pixels (got 'big')", "e.g. 224"],
        id="14b-model-resolution-not-an-int",
    ),
    pytest.param(
        "name: t\nmodels: [resnet18]\nmeasure: [train]\nmatrix:\n  strategy: [none, wieghted_loss]\n",
        5,
        "matrix.strategy[1]",
        ["unknown strategy 'wieghted_loss'", "did you mean 'weighted_loss'"],
        id="15-unknown-strategy",
    ),
    pytest.param(
        "name: t\nmodels:\n  - resnet18\n  - mobilenet_v2\n  - resnet18\n",
        5,
        "models[2]",
        ["model 'resnet18' is listed twice with the same settings (first as models[0])", "remove one"],
        id="16-duplicate-model-entry",
    ),
    pytest.param(
        "name: '<script>alert(1)</script>'\nmodels: [resnet18]\n",
        1,
        "name",
        ["not a usable suite name", "use letters, digits"],
        id="17-unusable-suite-name",
    ),
    pytest.param(  # user text echoed in a message must not be read as rich markup (was a MarkupError)
        "name: t\nmodels: [resnet18]\nnum_classes: '[/oops] [bold]x'\n",
        3,
        "num_classes",
        ["(got '[/oops] [bold]x')"],
        id="markup-in-echoed-value",
    ),
]


@pytest.mark.parametrize("text, line, field, fragments", PLAN_CASES)
def test_plan_bad_suite(write, text, line, field, fragments):
    path = write(text)
    _assert_input_error(_invoke("plan", path), f"{path}:{line}:", field, *fragments)


def test_unknown_profile_option(write):
    path = write("name: t\nmodels: [resnet18]\nprofiles:\n  quick:\n    matrix: {resolution: [64]}\n")
    _assert_input_error(
        _invoke("plan", path, "--profile", "quik"),
        f"{path}:3:",
        "profile",
        "unknown profile 'quik'",
        "did you mean 'quick'",
    )


def test_unknown_default_profile_points_at_default_profile(write):
    path = write("name: t\nmodels: [resnet18]\ndevice: cpu\nprofiles:\n  quick: {}\ndefault_profile: {cpu: quik}\n")
    _assert_input_error(
        _invoke("plan", path),
        f"{path}:6:",
        "default_profile.cpu",
        "unknown profile 'quik'",
        "did you mean 'quick'",
    )


def test_python_tag_rejected_and_not_executed(write, tmp_path):
    marker = tmp_path / "pwned"
    path = write(f'name: t\nmodels: [resnet18]\ndescription: !!python/object/apply:os.system ["touch {marker}"]\n')
    _assert_input_error(_invoke("plan", path), f"{path}:3:", "tag not allowed", "python/object/apply:os.system")
    assert not marker.exists()


def test_run_results_dir_not_writable(write, tmp_path):
    path = write("name: t\nmodels: [resnet18]\nmeasure: [profile]\n")
    (tmp_path / "afile").write_text("a regular file, so nothing can be created under it, even as root")
    out = tmp_path / "afile" / "run"
    _assert_input_error(_invoke("run", path, "--out", out), str(out), "results directory is not writable")
    assert not any(p.name == "cells" for p in tmp_path.rglob("*"))


def test_run_results_root_not_writable(write, tmp_path):
    path = write("name: t\nmodels: [resnet18]\nmeasure: [profile]\n")
    (tmp_path / "afile").write_text("")
    root = tmp_path / "afile" / "results"
    _assert_input_error(_invoke("run", path, "--results-root", root), f"{root}/t", "results directory is not writable")


def test_show_missing_directory(tmp_path):
    missing = tmp_path / "no-such-run"
    _assert_input_error(_invoke("show", missing), str(missing), "no such run directory")


def test_debug_shows_traceback(write):
    path = write("name: t\nmodels: [efficentnet_b0]\n")
    result = _invoke("--debug", "plan", path)
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError), repr(result.exception)
    assert result.exc_info is not None and result.exc_info[2] is not None  # the traceback is kept
    assert "unknown model 'efficentnet_b0'" in str(result.exception)
    assert result.exception.line == 2 and result.exception.field == "models[0].name"


def test_weights_of_another_architecture_refused_before_the_sweep(write, tmp_path):
    import torch

    from bench.models.builders import build_model

    torch.save(build_model("mobilenet_v2", num_classes=10).state_dict(), tmp_path / "mnv2.pth")
    path = write("name: t\nmodels:\n  - {name: resnet18, weights: mnv2.pth}\nnum_classes: 10\n")
    _assert_input_error(
        _invoke("plan", path),
        f"{path}:3:",
        "models[0].weights",
        "mnv2.pth: weights do not fit this architecture",
        "missing (e.g. bn1.bias)",
        "unexpected (e.g. classifier.1.bias)",
        "saved from the same model",
    )
    # the same architecture with another class count is fine: only the head is re-initialised
    torch.save(build_model("resnet18", num_classes=5).state_dict(), tmp_path / "r18.pth")
    ok = write("name: t\nmodels:\n  - {name: resnet18, weights: r18.pth}\nnum_classes: 10\n", "ok.yaml")
    assert _invoke("plan", ok).exit_code == 0
