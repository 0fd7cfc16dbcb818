"""Hypothesis fuzzing: random suite documents, valid-looking and broken, through the loader and the cell
expansion give a plan or an InputError, never anything else; random bytes saved as images give a clear
per-file error, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.core.errors import InputError
from bench.data import SampleSet, decode_all
from bench.data.images import clear_memory_cache
from bench.measure import get_measurement, list_measurements
from bench.measure.train.settings import BUILTIN_STRATEGIES, Strategy
from bench.models import list_models
from bench.suite.expand import expand
from bench.suite.load import load_suite
from bench.suite.schema import Matrix, ModelSpec, Suite

WORK = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-2, 5), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
junk_key = st.text(min_size=1, max_size=8)
model_names = st.sampled_from(
    list_models()[:12]
    + [
        "timm:resnet18",
        "torchvision:resnet18",
        "timm:no_such_net",
        "efficentnet_b0",
        "vit_small_patch16_224",
        "nope:x",
        "",
    ]
)
strategy_names = st.sampled_from(list(BUILTIN_STRATEGIES) + ["mine", "wieghted_loss"])
precisions = st.sampled_from(["fp32", "bf16", "fp16", "fp8", "FP32"])
AXIS_VALUES = {
    "precision": precisions,
    "batch_size": st.integers(-1, 64),
    "resolution": st.one_of(st.integers(-1, 640), st.just("native"), st.just("224"), st.floats(1, 300)),
    "channels_last": st.one_of(st.booleans(), st.just("yes")),
    "compile": st.booleans(),
    "backend": st.sampled_from(["eager", "onnxruntime", "tensorrt"]),
    "seed": st.integers(-1, 3),
    "strategy": strategy_names,
}


def _maybe_junk(strategy):
    return st.one_of(strategy, strategy, strategy, junk)


def _axis(name):
    return _maybe_junk(st.one_of(st.lists(AXIS_VALUES[name], max_size=2), AXIS_VALUES[name]))


matrix = st.one_of(
    st.fixed_dictionaries({}, optional={name: _axis(name) for name in Matrix.axes()}),
    st.dictionaries(st.one_of(st.sampled_from(Matrix.axes()), junk_key), junk, max_size=3),
    junk,
)


def _settings_for(name):
    fields = list(get_measurement(name).Settings.model_fields)
    return st.dictionaries(st.one_of(st.sampled_from(fields), junk_key), junk, max_size=3)


measurement_settings = st.one_of(
    st.fixed_dictionaries({}, optional={name: _settings_for(name) for name in list_measurements()}),
    st.dictionaries(st.one_of(st.sampled_from(list_measurements() + ["sped"]), junk_key), junk, max_size=2),
)
model_entry = st.one_of(
    model_names,
    st.fixed_dictionaries(
        {"name": model_names},
        optional={
            "resolution": _maybe_junk(st.integers(-1, 300)),
            "batch_size": _maybe_junk(st.integers(-1, 64)),
            "weights": st.sampled_from(["missing.pth", "", "../x.pt"]),
            "kwargs": st.dictionaries(junk_key, junk, max_size=1),
            "settings": measurement_settings,
            "resoluton": st.integers(1, 9),
        },
    ),
    junk,
)
rule = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "model": model_names,
            "family": st.sampled_from(["resnet", "vit", "efficientnet", "resnt"]),
            "precision": precisions,
            "resolution": AXIS_VALUES["resolution"],
            "strategy": strategy_names,
            "settings": measurement_settings,
        },
    ),
    st.dictionaries(junk_key, junk, max_size=2),
    junk,
)
strategy_def = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={k: junk for k in Strategy.model_fields}
        | {
            "sampler": st.sampled_from(["none", "weighted", "sqrt", "x"]),
            "loss": st.sampled_from(["ce", "focal", "y"]),
        },
    ),
    junk,
)
FIELDS = {
    "name": _maybe_junk(st.sampled_from(["t", "a.b-c", "", "<script>", "x/y"])),
    "description": _maybe_junk(st.text(max_size=10)),
    "models": _maybe_junk(st.lists(model_entry, max_size=3)),
    "matrix": matrix,
    "include": _maybe_junk(st.lists(rule, max_size=2)),
    "exclude": _maybe_junk(st.lists(rule, max_size=2)),
    "measure": _maybe_junk(
        st.one_of(
            st.lists(st.sampled_from(list_measurements() + ["speeed"]), max_size=3),
            st.sampled_from(list_measurements()),
        )
    ),
    "settings": _maybe_junk(measurement_settings),
    "num_classes": _maybe_junk(st.integers(-1, 1000)),
    "device": _maybe_junk(st.sampled_from(["auto", "cpu", "cuda", "tpu"])),
    "isolation": _maybe_junk(st.sampled_from(["auto", "process", "none", "threads"])),
    "memory_limit_mb": _maybe_junk(st.integers(-1, 4096)),
    "executor": _maybe_junk(st.sampled_from(["local", "ray", "slurm"])),
    "mlflow": _maybe_junk(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {}, optional={"tracking_uri": st.sampled_from(["sqlite:///x.db", 3]), "experiment": junk}
            ),
        )
    ),
    "ray": _maybe_junk(
        st.fixed_dictionaries(
            {}, optional={"address": st.sampled_from(["auto", "local"]), "max_retries": st.integers(-1, 3)}
        )
    ),
    "costs": _maybe_junk(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {}, optional={"price_per_hour": st.sampled_from([2.5, -1, "x"]), "grid_gco2_per_kwh": junk}
            ),
        )
    ),
    "cudnn_benchmark": _maybe_junk(st.sampled_from([True, False, None, "yes"])),
    "threads": _maybe_junk(st.integers(-1, 8)),
    "allocator": _maybe_junk(st.sampled_from(["pinned", "default", "jemalloc", "/nonexistent/libjemalloc.so.2"])),
    "strategies": _maybe_junk(st.dictionaries(st.sampled_from(["mine", "none", "focal"]), strategy_def, max_size=2)),
    "regression": _maybe_junk(
        st.dictionaries(
            st.sampled_from(["speed.throughput_img_s", "train.macro_f1", "x.y"]),
            st.one_of(st.sampled_from(["10%", "0.01", "exact", "5%+0.2", "lots"]), junk),
            max_size=2,
        )
    ),
    "profiles": _maybe_junk(
        st.dictionaries(
            st.sampled_from(["quick", "full"]),
            st.one_of(st.fixed_dictionaries({}, optional={"matrix": matrix, "measure": junk, "profiles": junk}), junk),
            max_size=2,
        )
    ),
    "default_profile": _maybe_junk(
        st.one_of(
            st.sampled_from(["quick", "full", "quik"]),
            st.fixed_dictionaries({}, optional={"cpu": st.sampled_from(["quick", "x"]), "cuda": st.just("full")}),
        )
    ),
}
assert set(FIELDS) == set(Suite.model_fields) and set(ModelSpec.model_fields) <= {
    "name",
    "resolution",
    "batch_size",
    "weights",
    "kwargs",
    "settings",
}
# Valid-looking documents: every value from the schema's own vocabulary, so that many of them plan
valid_names = st.sampled_from(
    ["resnet18", "mobilenet_v2", "efficientnet_b0", "vgg11_bn", "vit_small_patch16_224", "timm:resnet18"]
)
VALID = {
    "matrix": st.fixed_dictionaries(
        {},
        optional={
            "precision": st.lists(st.sampled_from(["fp32", "bf16", "fp16"]), min_size=1, max_size=2),
            "batch_size": st.lists(st.integers(1, 64), min_size=1, max_size=2),
            "resolution": st.lists(st.one_of(st.integers(8, 300), st.just("native")), min_size=1, max_size=2),
            "channels_last": st.booleans(),
            "seed": st.lists(st.integers(0, 3), min_size=1, max_size=2),
            "strategy": st.lists(st.sampled_from(list(BUILTIN_STRATEGIES)), min_size=1, max_size=2),
        },
    ),
    "measure": st.lists(st.sampled_from(list_measurements()), min_size=1, max_size=3, unique=True),
    "exclude": st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "model": valid_names,
                "precision": st.sampled_from(["fp32", "bf16", "fp16"]),
                "family": st.sampled_from(["resnet", "vit"]),
            },
        ).filter(bool),
        max_size=2,
    ),
    "include": st.lists(
        st.fixed_dictionaries({"model": valid_names}, optional={"precision": st.sampled_from(["fp32", "bf16"])}),
        max_size=1,
    ),
    "num_classes": st.integers(1, 1000),
    "device": st.sampled_from(["auto", "cpu"]),
    "settings": st.fixed_dictionaries(
        {},
        optional={
            "speed": st.fixed_dictionaries(
                {}, optional={"warmup_iters": st.integers(0, 5), "min_repeats": st.integers(1, 9)}
            ),
            "train": st.fixed_dictionaries(
                {},
                optional={
                    "epochs": st.integers(1, 3),
                    "lr": st.floats(1e-5, 1.0),
                    "optimizer": st.sampled_from(["adam", "sgd"]),
                },
            ),
        },
    ),
    "profiles": st.fixed_dictionaries(
        {}, optional={"quick": st.fixed_dictionaries({}, optional={"matrix": st.just({"resolution": [32]})})}
    ),
    "regression": st.dictionaries(
        st.sampled_from(["speed.throughput_img_s", "train.macro_f1"]),
        st.sampled_from(["10%", "0.01", "exact"]),
        max_size=2,
    ),
}
valid_document = st.fixed_dictionaries(
    {"name": st.sampled_from(["t", "a.b-c"]), "models": st.lists(valid_names, min_size=1, max_size=2, unique=True)},
    optional=VALID,
)


@st.composite
def one_field_broken(draw):
    doc = draw(valid_document)
    key = draw(st.sampled_from(sorted(FIELDS)))
    doc[key] = draw(FIELDS[key])
    return doc


documents = st.one_of(
    valid_document,
    valid_document,
    valid_document,
    valid_document,
    one_field_broken(),
    one_field_broken(),
    st.fixed_dictionaries({}, optional=FIELDS),
    st.fixed_dictionaries(
        {"name": st.just("t"), "models": st.lists(model_names, min_size=1, max_size=2)},
        optional={k: v for k, v in FIELDS.items() if k not in ("name", "models")},
    ),
    st.dictionaries(junk_key, junk, max_size=3),
    junk,
)
overrides = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "settings.speed.min_repeats=3",
                "matrix.resolution=[32, 64]",
                "num_classes=x",
                "=3",
                "nokey",
                "models=[resnet18]",
                "matrix.precision=fp8",
                "a.b=[unclosed",
                "settings.train.epochs=0",
            ]
        ),
        st.text(max_size=12),
    ),
    max_size=2,
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    doc=documents,
    profile=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(["quick", "full", "nope"])),
    sets=st.one_of(st.just([]), st.just([]), overrides),
    data=st.data(),
)
def test_random_suites_give_a_plan_or_an_input_error(doc, profile, sets, data):
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if data.draw(st.integers(0, 6), label="mutate") == 0:  # and sometimes broken YAML
        pos = data.draw(st.integers(0, len(text)), label="at")
        text = (
            text[:pos]
            + data.draw(
                st.sampled_from(["\t", ": ", "- ", "[", "{", "!!python/name:os.system ", "&a *a ", "\x00", "'"]),
                label="insert",
            )
            + text[pos:]
        )
    event(_plan_or_error(text, profile, sets))


def _plan_or_error(text: str, profile=None, sets=()) -> str:
    path = WORK / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        cells = expand(load_suite(path, profile, list(sets)))
    except InputError as exc:
        message = str(exc)
        assert message.strip() and "Traceback" not in message
        return "input error"
    assert cells and len({c.id for c in cells}) == len(cells)
    assert all(c.batch_size > 0 and c.resolution > 0 and c.precision in ("fp32", "bf16", "fp16") for c in cells)
    return "plan"


def test_valid_looking_suites_mostly_plan():
    """The fuzz is not vacuous: documents from the schema's own vocabulary mostly give a plan."""
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
    )
    @given(doc=valid_document)
    def run(doc):
        outcome = _plan_or_error(yaml.safe_dump(doc, sort_keys=False))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    assert outcomes.get("plan", 0) > outcomes.get("input error", 0), outcomes


# -- random bytes as images -------------------------------------------------------------------------------
HEADERS = [
    b"",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"II*\x00",
]


@settings(max_examples=300, deadline=None)
@given(
    header=st.sampled_from(HEADERS),
    body=st.binary(max_size=600),
    suffix=st.sampled_from([".jpg", ".png", ".gif", ".webp", ".tif"]),
)
def test_random_bytes_as_images_give_a_per_file_error(header, body, suffix):
    clear_memory_cache()
    good = WORK / "good.png"
    if not good.exists():
        Image.new("RGB", (10, 10), (1, 2, 3)).save(good)
    bad = WORK / f"random{suffix}"
    bad.write_bytes(header + body)
    samples = SampleSet(keys=["good", "random"], labels=["a", "b"], paths=[good, bad])
    try:
        decoded = decode_all(samples, 8, disk_cache=False, workers=1)
    except InputError as exc:
        event("per-file error")
        assert exc.file == str(bad) and "bad image:" in exc.message and "on_bad_image: skip" in exc.hint
    else:  # the bytes happened to decode: a real image, then
        assert decoded.images.shape == (2, 3, 8, 8)
    clear_memory_cache()
    skipped = decode_all(samples, 8, on_bad_image="skip", disk_cache=False, workers=1)
    assert (
        0 not in [i for i in range(len(samples)) if i not in skipped.kept] and len(skipped.kept) + len(skipped.bad) == 2
    )
    assert all(file == str(bad) and reason for file, reason in skipped.bad)
    assert np.asarray(skipped.images[0]).shape == (3, 8, 8)
