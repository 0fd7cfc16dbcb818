"""Standard datasets read locally (never downloaded): CIFAR-10 and STL-10 in torchvision's layout, cats vs
dogs as an image folder, and their labelled synthetic stand-ins when the files are absent."""

import pickle
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.errors import InputError
from bench.data import dataset_option_names, load_samples
from bench.measure.train.loop import DataSettings, prepare_data

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar10(root, per_batch=20, seed=0):
    """A tiny CIFAR-10 in torchvision's layout: root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta},
    pickled as the real files are (dicts of bytes keys, 'data' N x 3072 uint8 row-major, 'labels')."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % 10 for i in range(per_batch)]
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        data[:, :1024] = np.array(labels, dtype=np.uint8)[:, None] * 25  # red plane encodes the class
        batches[name] = (data, labels)
        with open(folder / name, "wb") as fh:
            pickle.dump(
                {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * per_batch},
                fh,
                protocol=2,
            )
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(
            {b"label_names": [n.encode() for n in NAMES], b"num_cases_per_batch": per_batch, b"num_vis": 3072},
            fh,
            protocol=2,
        )
    return batches


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_cifar10_in_torchvision_layout_loads_without_network(tmp_path, no_network):
    batches = fake_cifar10(tmp_path / "data")
    s = load_samples("cifar10", {"root": "data"}, tmp_path)
    assert len(s) == 120 and not s.synthetic and s.notes == ["split:100"]
    assert s.classes == sorted(NAMES)
    first = batches["data_batch_1"][0][3]  # the 4th image of the first batch, class 3 (cat)
    assert s.labels[3] == "cat" and s.arrays[3].shape == (32, 32, 3)
    assert np.array_equal(s.arrays[3], first.reshape(3, 32, 32).transpose(1, 2, 0))
    assert s.keys[100] == "cifar10-test-00000" and s.labels[100] == "airplane"
    # through the training data path: the test batch is the test set, validation comes out of the training batches
    train, val, test, info = prepare_data(
        DataSettings(kind="cifar10", options={"root": "data"}, hflip=False), 32, 0, tmp_path
    )
    assert (info["n_train"], info["n_val"], info["n_test"]) == (90, 10, 20) and info["synthetic"] is False
    assert all(k.startswith("cifar10-test-") for k in info["test_keys"]) and len(test) == 20
    assert not any(k.startswith("cifar10-test-") for k in info["val_keys"])
    assert info["dataset"].startswith("CIFAR-10 ")
    x, y = train.__getitems__([0])
    assert x.shape == (1, 3, 32, 32) and y.dtype == torch.int64


def test_cifar10_pickle_that_runs_code_is_refused(tmp_path):
    fake_cifar10(tmp_path)

    class Boom:
        def __reduce__(self):
            return (eval, ("print('pwned')",))  # eval, not print: Ray, once imported, replaces builtins.print

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": Boom(), b"labels": [0]}, fh)
    with pytest.raises(InputError) as info:
        load_samples("cifar10", {"root": str(tmp_path)}, tmp_path)
    assert "refused: builtins.eval" in info.value.message and info.value.file.endswith("data_batch_2")


def test_absent_files_say_where_to_put_them(tmp_path):
    for kind, where in (
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("stl10", "stl10_binary/train_X.bin"),
        ("cats-vs-dogs", "Cat/1.jpg"),
    ):
        with pytest.raises(InputError) as info:
            load_samples(kind, {"root": "nowhere"}, tmp_path)
        err = info.value
        assert (
            "not found under" in err.message
            and where in err.hint
            and "never downloads" in err.hint
            and "fallback: synthetic" in err.hint
        )


def test_standins_have_the_real_shape_and_are_labelled(tmp_path):
    c = load_samples("cifar10", {"root": "nowhere", "fallback": "synthetic", "synthetic": {"scale": 0.01}}, tmp_path)
    assert (
        c.synthetic
        and c.description.startswith("SYNTHETIC stand-in for CIFAR-10")
        and "not found under" in c.description
    )
    assert c.classes == sorted(NAMES) and c.arrays[0].shape == (32, 32, 3)
    counts = np.unique(c.labels, return_counts=True)[1]
    assert set(counts) == {60} and c.notes == ["split:500"]  # 50 train + 10 test a class: CIFAR's 5:1, balanced
    s = load_samples("synthetic-stl10", {"scale": 0.02}, tmp_path)
    assert s.synthetic and s.arrays[0].shape == (96, 96, 3) and len(s) == 10 * (10 + 16) and s.notes == ["split:100"]
    d = load_samples(
        "cats-vs-dogs",
        {"root": "nowhere", "fallback": "synthetic", "synthetic": {"scale": 0.002, "image_size": 48}},
        tmp_path,
    )
    assert d.synthetic and d.classes == ["cat", "dog"] and len(d) == 50 and d.notes == []
    again = load_samples("synthetic-cats-vs-dogs", {"scale": 0.002, "image_size": 48}, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(d.arrays, again.arrays))  # deterministic
    part = d.subset([7, 3])
    assert (
        np.array_equal(part.arrays[0], d.arrays[7])
        and part.fingerprint() != d.fingerprint()
        and part.fingerprint() == d.subset([7, 3]).fingerprint()
    )


def test_stl10_binary_layout(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 10), ("test", 6)):
        x = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        x.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # STL-10 stores images column-major
        (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        if split == "train":
            first = x[0]
    s = load_samples("stl10", {"root": str(tmp_path)}, tmp_path)
    assert len(s) == 16 and s.notes == ["split:10"] and s.labels[0] == "airplane" and not s.synthetic
    assert np.array_equal(s.arrays[0], first.transpose(1, 2, 0))


def test_cats_vs_dogs_image_folder(tmp_path):
    for cls in ("Cat", "Dog"):
        (tmp_path / "PetImages" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (200 if cls == "Cat" else 20, 90, 90)).save(
                tmp_path / "PetImages" / cls / f"{i}.jpg"
            )
    s = load_samples("cats-vs-dogs", {"root": "PetImages"}, tmp_path)
    assert s.classes == ["Cat", "Dog"] and len(s) == 6 and not s.synthetic


def test_dataset_options_are_known():
    assert dataset_option_names("cifar10") == ["root", "fallback", "synthetic"]
    assert dataset_option_names("synthetic-stl10") == ["scale", "seed", "image_size"]
