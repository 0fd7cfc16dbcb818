"""Suite expansion: exact counts, include/exclude semantics, ids stable across processes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from cell_factory import make_cell

from bench.core.cell import Cell, cell_id
from bench.suite.expand import expand
from bench.suite.load import load_suite

THREE_AXES = textwrap.dedent(
    """
    name: three-axes
    models: [resnet18, mobilenet_v2, {name: efficientnet_b0, resolution: 96}]
    matrix:
      precision: [fp32, bf16, fp16]
      batch_size: [1, 8]
      resolution: [64, native]
    exclude:
      - {model: mobilenet_v2, precision: fp16}          # removes 1 x 2 x 2 = 4
      - {family: resnet, batch_size: 1, resolution: 224}  # removes 3 (one per precision)
    include:
      - {model: vgg11, precision: bf16, channels_last: true}  # adds 1 (a model not in the list)
      - {model: resnet18, precision: fp32, compile: true}     # adds 1 (bs 1, res 64: first values)
    """
)


def test_exact_cell_count(suite_file):
    cells = expand(load_suite(suite_file(THREE_AXES)))
    # resnet18: 3x2x2=12 - 3 = 9; mobilenet_v2: 12 - 4 = 8;
    # efficientnet_b0: resolution fixed to 96 -> 3x2 = 6 distinct; includes: +2  => 25
    assert len(cells) == 25
    assert len({c.id for c in cells}) == 25
    by_model = {}
    for c in cells:
        by_model.setdefault(c.model, []).append(c)
    assert len(by_model["resnet18"]) == 10
    assert {c.resolution for c in by_model["efficientnet_b0"]} == {96}
    assert not [c for c in by_model["mobilenet_v2"] if c.precision == "fp16"]
    vgg = by_model["vgg11"][0]
    assert (vgg.precision, vgg.channels_last, vgg.batch_size, vgg.resolution) == ("bf16", True, 1, 64)


def test_expansion_is_deterministic(suite_file):
    path = suite_file(THREE_AXES)
    assert [c.id for c in expand(load_suite(path))] == [c.id for c in expand(load_suite(path))]


def _ids_in_subprocess(path, hashseed):
    code = (
        "import sys; from bench.suite import expand, load_suite; "
        "print(' '.join(c.id for c in expand(load_suite(sys.argv[1]))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": str(hashseed)}
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_ids_identical_across_processes(suite_file):
    path = suite_file(THREE_AXES)
    first, second = _ids_in_subprocess(path, 1), _ids_in_subprocess(path, 2)
    assert first == second and len(first) == 25
    assert first == [c.id for c in expand(load_suite(path))]


def test_id_is_hash_of_resolved_config_only(suite_file):
    """The same cell from two different suites (other name, other order) has the same id."""
    a = expand(load_suite(suite_file("name: a\nmodels: [resnet18]\nmatrix: {resolution: [64]}\n", "a.yaml")))
    b = expand(
        load_suite(
            suite_file(
                "name: b\ndescription: other\nmodels: [mobilenet_v2, resnet18]\nmatrix: {resolution: 64}\n", "b.yaml"
            )
        )
    )
    assert a[0].id == b[1].id
    # and a known value: the hash is of canonical JSON, so it must not drift between versions silently
    assert a[0].id == cell_id(a[0].identity())


def test_cell_roundtrip():
    cell = make_cell(batch_size=2, measure=("profile",), settings={"profile": {"batch_size": 1}})
    again = Cell.from_dict(json.loads(json.dumps(cell.to_dict())))
    assert again == cell and again.id == cell.id


def test_changed_setting_changes_id(suite_file):
    base = "name: s\nmodels: [resnet18]\nmatrix: {resolution: [64]}\n"
    a = expand(load_suite(suite_file(base, "a.yaml")))[0]
    b = expand(load_suite(suite_file(base + "settings: {speed: {min_repeats: 99}}\n", "b.yaml")))[0]
    assert a.id != b.id


def test_profile_overrides(suite_file):
    text = textwrap.dedent(
        """
        name: p
        models: [resnet18]
        matrix: {resolution: [224], precision: [fp32, bf16]}
        profiles:
          quick: {matrix: {resolution: [32]}, settings: {speed: {min_time_s: 0.1}}}
        """
    )
    cells = expand(load_suite(suite_file(text), "quick"))
    assert [(c.resolution, c.precision) for c in cells] == [(32, "fp32"), (32, "bf16")]
    assert cells[0].settings["speed"]["min_time_s"] == 0.1


def test_default_profile_by_device(suite_file):
    text = "name: p\nmodels: [resnet18]\nprofiles: {quick: {num_classes: 5}, full: {}}\ndefault_profile: {cpu: quick, cuda: full}\n"
    suite = load_suite(suite_file(text))
    import torch

    assert suite.profile == ("full" if torch.cuda.is_available() else "quick")


@pytest.mark.parametrize("suite", ["smoke", "efficientnet_scaling", "artists"])
def test_shipped_suites_are_valid(suite):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "suites" / f"{suite}.yaml"
    loaded = load_suite(path)
    assert expand(loaded)
    for name in loaded.profiles:
        assert expand(load_suite(path, name))


def test_cudnn_benchmark_is_part_of_the_cell_only_when_set(suite_file):
    base = "name: cudnn\nmodels: [resnet18]\nmatrix: {precision: [fp32, bf16]}\n"
    plain = expand(load_suite(suite_file(base)))
    unset = expand(load_suite(suite_file(base + "cudnn_benchmark: null\n")))
    on = expand(load_suite(suite_file(base + "cudnn_benchmark: true\n")))
    off = expand(load_suite(suite_file(base + "cudnn_benchmark: false\n")))
    assert [c.id for c in plain] == [c.id for c in unset]  # unset: ids as before the option existed
    assert "cudnn_benchmark" not in plain[0].identity()
    assert all(c.cudnn_benchmark is True for c in on) and all(c.cudnn_benchmark is False for c in off)
    ids = [{c.id for c in cells} for cells in (plain, on, off)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert Cell.from_dict(on[0].to_dict()) == on[0] and Cell.from_dict(on[0].to_dict()).id == on[0].id
    assert "cudnn_benchmark=True" in on[0].label()
    # an id computed before the option existed (no key at all in the identity) is unchanged
    import dataclasses

    legacy = dataclasses.asdict(plain[0])
    for key in ("weights", "axes", "cudnn_benchmark", "backend"):
        legacy.pop(key)
    legacy["measure"] = list(plain[0].measure)
    assert cell_id(legacy) == plain[0].id


def test_cudnn_benchmark_set_for_the_cell_and_restored(monkeypatch):
    import torch

    from bench.execution import cell as runner

    seen = []
    monkeypatch.setattr(runner, "_measure_cell", lambda cell, *a: seen.append(torch.backends.cudnn.benchmark))
    cell = make_cell(resolution=32, batch_size=2, measure=("profile",), cudnn_benchmark=True)
    before = torch.backends.cudnn.benchmark
    runner.run_cell(cell, torch.device("cpu"))
    assert seen == [True] and torch.backends.cudnn.benchmark == before
    runner.run_cell(Cell.from_dict({**cell.to_dict(), "cudnn_benchmark": None}), torch.device("cpu"))
    assert seen[-1] == before


def test_cudnn_benchmark_must_be_a_bool(suite_file):
    from bench.core.errors import InputError

    with pytest.raises(InputError, match="cudnn_benchmark"):
        load_suite(suite_file("name: x\nmodels: [resnet18]\ncudnn_benchmark: maybe\n"))
