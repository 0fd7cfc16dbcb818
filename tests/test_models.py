"""Every registered model is built and run, with sockets blocked: bench never opens a connection.

As in timm's tests/test_models.py, the test list is generated from the registry, so a new entry is
tested for free.
"""

import socket

import pytest
import torch

from bench.core.errors import InputError
from bench.models import get_entry, is_model, list_models
from bench.models.builders import build_model, classifier_prefix
from bench.models.catalog import EFFICIENTNET_NATIVE


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkBlocked("bench tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def test_socket_block_really_blocks(no_network):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(NetworkBlocked):
        socket.socket().connect(("127.0.0.1", 9))


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_offline(name, no_network):
    entry = get_entry(name)
    model = build_model(name, num_classes=7, resolution=64)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 7)
    assert entry.family and entry.native_resolution >= (
        32 if entry.source == "bench" else 224
    )  # bench's small CNN is CIFAR-sized


def test_catalogue_has_required_models():
    required = [f"efficientnet_b{i}" for i in range(8)] + [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "wide_resnet50_2",
        "wide_resnet101_2",
        "vgg11",
        "vgg16",
        "vgg19",
        "vgg11_bn",
        "vgg16_bn",
        "vgg19_bn",
        "mobilenet_v2",
        "vit_small_patch16_224",
        "vit_base_patch16_224",
        "vit_small_patch8_224",
        "vit_base_patch8_224",
        "visformer_small",
    ]
    assert set(required) <= set(list_models())
    assert [get_entry(f"efficientnet_b{i}").native_resolution for i in range(8)] == [
        224,
        240,
        260,
        300,
        380,
        456,
        528,
        600,
    ]
    assert EFFICIENTNET_NATIVE[7] == 600


def test_prefixed_names(no_network):
    assert is_model("timm:resnet10t") and is_model("torchvision:squeezenet1_0")
    assert not is_model("timm:no_such_model") and not is_model("resnet_nope")
    assert get_entry("timm:resnet10t").source == "timm"
    model = build_model("torchvision:squeezenet1_0", num_classes=3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_unknown_model_suggests():
    with pytest.raises(InputError, match="did you mean 'efficientnet_b0'"):
        get_entry("efficentnet_b0")


def test_local_weights_roundtrip_and_head_resize(tmp_path):
    src = build_model("resnet18", num_classes=10)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    same = build_model("resnet18", num_classes=10, weights=path)
    assert torch.equal(same.conv1.weight, src.conv1.weight) and torch.equal(same.fc.weight, src.fc.weight)
    resized = build_model("resnet18", num_classes=4, weights=path)
    assert classifier_prefix(resized) == "fc"
    assert torch.equal(resized.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert resized.fc.weight.shape == (4, 512)


def test_weights_of_another_architecture_rejected(tmp_path):
    path = tmp_path / "mnv2.pth"
    torch.save(build_model("mobilenet_v2", num_classes=10).state_dict(), path)
    with pytest.raises(InputError, match="do not fit this architecture"):
        build_model("resnet18", num_classes=10, weights=path)


def test_weights_loaded_without_running_pickled_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(InputError, match="refused to load weights: not plain tensors"):
        build_model("resnet18", weights=path)
    assert not marker.exists()


def test_small_cnn_is_configurable_and_validated():
    from bench.core.errors import InputError

    base = build_model("small_cnn", num_classes=10, resolution=32)
    n = sum(p.numel() for p in base.parameters())
    # the Keras CIFAR-10 network: conv 3->32, 32->32, 32->64, 64->64 (3x3), dense 64*8*8 -> 512 -> 10
    assert n == (3 * 32 * 9 + 32) + (32 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 64 * 9 + 64) + (
        4096 * 512 + 512
    ) + (512 * 10 + 10)
    wide = build_model("small_cnn", num_classes=10, resolution=32, filters=64, pool_size=4, dropout=0.2, dense=128)
    assert wide.flat_size == 128 * 2 * 2 and wide.head[3].p == 0.2 and classifier_prefix(wide) == "classifier"
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(InputError, match="too small"):
        build_model("small_cnn", num_classes=10, resolution=8, pool_size=3)
    with pytest.raises(Exception, match="pool_size"):
        build_model("small_cnn", num_classes=10, resolution=32, pool_size=0)
