"""The founding experiments as suites (suites/seeds/): each loads and plans in every profile, finds its data
or a labelled stand-in, and the artists seed is the artists suite."""

from pathlib import Path

import pytest

from bench.cli.console import SUITE_DIRS
from bench.execution.epochs import shared_training_groups
from bench.suite.expand import expand
from bench.suite.load import find_suite, load_suite

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "suites" / "seeds"
NAMES = ["efficientnet_from_scratch", "artists", "transfer_cats_dogs", "small_cnn_cifar", "precision_formats"]


@pytest.mark.parametrize("name", NAMES)
def test_seed_suite_plans_in_every_profile(name):
    path = SEEDS / f"{name}.yaml"
    suite = load_suite(path)
    assert set(suite.profiles) == {"quick", "full"} and suite.default_profile == {"cpu": "quick", "cuda": "full"}
    for profile in ("quick", "full"):
        cells = expand(load_suite(path, profile))
        assert cells and all("train" in c.measure for c in cells)


def test_seed_suites_are_found_by_name():
    assert find_suite("small_cnn_cifar", [ROOT / "suites", SEEDS]) == SEEDS / "small_cnn_cifar.yaml"
    assert any(d.name == "seeds" for d in SUITE_DIRS)


def test_artists_seed_full_profile_is_the_artists_suite():
    seed = [c.id for c in expand(load_suite(SEEDS / "artists.yaml", "full"))]
    assert len(seed) == 90 and seed == [c.id for c in expand(load_suite(ROOT / "suites" / "artists.yaml", "full"))]


def test_seed_sweeps_are_what_the_experiments_compared():
    small = expand(load_suite(SEEDS / "small_cnn_cifar.yaml", "full"))
    assert {
        (c.value("model.pool_size"), c.value("model.filters"), c.value("train.optimizer"), c.value("model.dropout"))
        for c in small
    } == {(p, f, o, d) for p in (2, 3) for f in (32, 64) for o in ("rmsprop", "adam") for d in (0.5, 0.2)}
    quick = expand(load_suite(SEEDS / "small_cnn_cifar.yaml", "quick"))
    assert len(quick) == 5  # the recipe and one change per axis
    transfer = expand(load_suite(SEEDS / "transfer_cats_dogs.yaml", "full"))
    assert {c.batch_size for c in transfer} == {5, 10, 50, 64, 100} and {c.value("train.epochs") for c in transfer} == {
        10,
        20,
        30,
    }
    assert all(c.settings["train"]["freeze_backbone"] for c in transfer)
    assert sum(len(g) for g in shared_training_groups(transfer)) == 60  # every epoch count read off one training
    effnet = expand(load_suite(SEEDS / "efficientnet_from_scratch.yaml", "full"))
    assert [c.model_kwargs for c in effnet] == [{"stochastic_depth_prob": 0.0}, {"stochastic_depth_prob": 0.2}]
    assert all(c.settings["train"]["lr"] == 0.01 and c.settings["train"]["scheduler"] == "plateau" for c in effnet)
    precision = expand(load_suite(SEEDS / "precision_formats.yaml", "quick"))
    assert {c.precision for c in precision} == {"fp32", "bf16", "fp16"}
