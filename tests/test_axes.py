"""Dotted-path axes: any config field is an axis, validated like the field itself; ids stay stable."""

import json
import textwrap
from pathlib import Path

import pytest
import torch

import bench.measure.train.loop as train_module
from bench.core.errors import InputError
from bench.execution.sweep import run_cells
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite

ROOT = Path(__file__).resolve().parents[1]

SUITE = textwrap.dedent(
    """
    name: axes
    models: [{name: small_cnn, kwargs: {dense: 32}}]
    num_classes: 10
    matrix:
      resolution: [12]
      batch_size: [32]
      train.optimizer: [adam, sgd]
      model.filters: [4, 8]
    measure: [profile, train]
    settings:
      train:
        data: {kind: digits, val_fraction: 0.3, subset: 0.4}
        epochs: 1
        lr: 0.01
        early_stopping: null
    """
)


def test_dotted_axis_multiplies_cells_and_reaches_the_training_loop(suite_file, tmp_path, monkeypatch):
    cells = expand(load_suite(suite_file(SUITE)))
    assert len(cells) == 4 and len({c.id for c in cells}) == 4  # 2 optimizers x 2 filter counts
    assert [(c.axes["train.optimizer"], c.axes["model.filters"]) for c in cells] == [
        ("adam", 4),
        ("adam", 8),
        ("sgd", 4),
        ("sgd", 8),
    ]
    assert [c.settings["train"]["optimizer"] for c in cells] == ["adam", "adam", "sgd", "sgd"]
    assert [c.model_kwargs for c in cells] == [{"filters": 4, "dense": 32}, {"filters": 8, "dense": 32}] * 2
    assert "train.optimizer=sgd" in cells[2].label()

    built = []
    real = train_module._optimizer

    def spy(settings, params):
        opt = real(settings, params)
        built.append(type(opt).__name__)
        return opt

    monkeypatch.setattr(train_module, "_optimizer", spy)
    store = RunStore.create(tmp_path / "run")
    summary = run_cells(cells, store, torch.device("cpu"), base_dir=tmp_path)
    assert [r.status for r in summary.results] == ["ok"] * 4, [r.reason for r in summary.results]
    assert built == ["Adam", "Adam", "SGD", "SGD"]  # the axis value is what the training loop used
    params = [r.measurements["profile"]["params"] for r in summary.results]
    assert params[0] < params[1] and params[0] == params[2]  # model.filters reached the model's builder
    import pandas as pd

    table = pd.read_csv(store.run_dir / "results.csv")
    assert list(table["axis.train.optimizer"]) == ["adam", "adam", "sgd", "sgd"] and list(
        table["axis.model.filters"]
    ) == [4, 8, 4, 8]


def test_nested_yaml_and_set_give_the_same_cells(suite_file):
    dotted = expand(load_suite(suite_file(SUITE, name="a.yaml")))
    nested = expand(
        load_suite(
            suite_file(SUITE.replace("train.optimizer: [adam, sgd]", "train: {optimizer: [adam, sgd]}"), name="b.yaml")
        )
    )
    no_axis = SUITE.replace("  train.optimizer: [adam, sgd]\n", "")
    via_set = expand(load_suite(suite_file(no_axis, name="c.yaml"), overrides=["matrix.train.optimizer=[adam, sgd]"]))
    assert [c.id for c in dotted] == [c.id for c in nested]
    assert sorted(c.id for c in via_set) == sorted(
        c.id for c in dotted
    )  # --set appends its axis: same cells, other order
    # an axis at one value is the same cell as the plain setting
    one = expand(load_suite(suite_file(no_axis.replace("lr: 0.01", "lr: 0.01\n    optimizer: sgd"), name="d.yaml")))
    assert {c.id for c in one} == {c.id for c in dotted if c.axes["train.optimizer"] == "sgd"}


@pytest.mark.parametrize(
    "replace, message, hint",
    [
        (
            "train.optimizer: [adam, sgd]",
            "axis 'train.optimzer': unknown field 'optimzer' in settings.train",
            "did you mean 'optimizer'?",
        ),
        ("trian.optimizer: [adam, sgd]", "unknown axis 'trian.optimizer'", "did you mean 'train'?"),
        (
            "train.optimizer: [adam, sdg]",
            "Input should be 'adam', 'adamw', 'sgd' or 'rmsprop' (got 'sdg')",
            "settings.train",
        ),
        ("model.filtres: [4, 8]", "no keyword argument 'filtres'", "did you mean 'filters'?"),
        (
            "train.data.options.imbalanc: [2]",
            "dataset kind 'digits' has no option 'imbalanc'",
            "did you mean 'imbalance'?",
        ),
        ("speed.min_time_s: [1]", "the suite does not measure 'speed'", "add speed to measure"),
    ],
)
def test_bad_dotted_axes_name_file_line_and_suggest(suite_file, replace, message, hint):
    original = "train.optimizer: [adam, sgd]" if "optimi" in replace else "model.filters: [4, 8]"
    if replace.startswith(("train.data", "speed")):
        text = SUITE.replace("  model.filters: [4, 8]\n", f"  model.filters: [4, 8]\n  {replace}\n")
    else:
        text = SUITE.replace(
            original,
            replace.replace("optimizer: [adam, sgd]", "optimzer: [adam, sgd]")
            if replace.startswith("train.optimizer: [adam, sgd]")
            else replace,
        )
    path = suite_file(text)
    with pytest.raises(InputError) as info:
        load_suite(path)
    err = info.value
    assert message in err.message and hint in (err.hint or ""), err.format()
    assert err.file == str(path) and err.line is not None
    line = text.splitlines()[err.line - 1]
    assert line.strip().split(":")[0] in replace.replace("optimizer", "optimzer") or line.strip().startswith(
        replace.split(":")[0]
    )


def test_shipped_suite_ids_unchanged():
    """The committed nightly baseline is keyed by cell id: the suite must still expand to those ids."""
    plan = json.loads((ROOT / "results/baselines/nightly/plan.json").read_text())
    cells = expand(load_suite(ROOT / "suites/nightly.yaml"))
    assert [c.id for c in cells] == [c["id"] for c in plan["cells"]]
    assert all(c.axes == {} for c in cells)
