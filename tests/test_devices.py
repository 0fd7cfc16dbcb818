"""bench.platform.peaks: peak FLOP/s matched from device names, MFU with exact numbers on hand-made inputs."""

import pytest
from cell_factory import make_cell

from bench.core.result import CellResult
from bench.execution.cell import attach_mfu
from bench.measure.mfu import cell_mfu
from bench.platform.peaks import DEVICES, match_device, mfu

T = 1e12


@pytest.mark.parametrize(
    "name,expected",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 (SXM4 and PCIe, 40/80 GB)"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100 (SXM4 and PCIe, 40/80 GB)"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA A10G", "NVIDIA A10G"),
        ("NVIDIA A10", "NVIDIA A10"),
        ("Tesla V100-SXM2-16GB", "NVIDIA V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "NVIDIA V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "NVIDIA V100S PCIe"),
        ("Tesla T4", "NVIDIA T4"),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
    ],
)
def test_match_device(name, expected):
    assert match_device(name).name == expected


@pytest.mark.parametrize(
    "name", [None, "", "CPU AMD EPYC 7B13", "NVIDIA L40S", "NVIDIA GeForce RTX 3090", "NVIDIA A40"]
)
def test_unknown_devices(name):
    assert match_device(name) is None


def test_table_has_sources_and_dense_ordering():
    for dev in DEVICES:
        assert dev.source and ("http" in dev.source)
        for p in ("bf16", "fp16"):
            if dev.peak(p) is not None:
                assert dev.peak(p) >= dev.fp32  # tensor-core peaks above the plain FP32 one
    h100 = match_device("NVIDIA H100 80GB HBM3")
    assert h100.bf16 == 989.5 * T  # the datasheet's 1,979 TFLOPS is with sparsity: dense is half
    assert match_device("NVIDIA A100-SXM4-40GB").bf16 == 312 * T


def test_mfu_exact():
    # 100 TFLOP/s achieved in bf16 on an A100 (312 TFLOP/s dense): 0.3205...
    m = mfu(100 * T, "NVIDIA A100-SXM4-80GB", "bf16")
    assert m["utilisation"] == pytest.approx(100 / 312)
    assert m["peak_tflop_s"] == pytest.approx(312) and m["peak_precision"] == "bf16" and m["reason"] is None
    assert "a100" in m["peak_source"].lower()


def test_fp32_uses_tf32_when_allowed():
    assert mfu(39 * T, "NVIDIA A100-PCIE-40GB", "fp32", tf32_allowed=True)["utilisation"] == pytest.approx(39 / 156)
    m = mfu(39 * T, "NVIDIA A100-PCIE-40GB", "fp32", tf32_allowed=False)
    assert m["utilisation"] == pytest.approx(2.0) and m["peak_precision"] == "fp32"  # 39 / 19.5
    assert mfu(4.05 * T, "Tesla T4", "fp32", tf32_allowed=True)["utilisation"] == pytest.approx(0.5)  # no TF32 on a T4


def test_mfu_none_with_reason():
    m = mfu(1 * T, "CPU AMD EPYC", "fp32")
    assert m["utilisation"] is None and "no peak FLOP/s known" in m["reason"]
    m = mfu(1 * T, "Tesla V100-SXM2-16GB", "bf16")
    assert m["utilisation"] is None and "no bf16" in m["reason"]
    m = mfu(None, "NVIDIA L4", "fp16")
    assert m["utilisation"] is None and m["peak_tflop_s"] == pytest.approx(121) and "no achieved" in m["reason"]


def test_cell_mfu_inference_and_training():
    # resnet18-like: 1.8 GMACs = 3.6 GFLOPs forward per image, training 3x that; 1000 img/s inference, 300 train
    meas = {
        "profile": {
            "status": "ok",
            "macs": 1.8e9,
            "flops": 3.6e9,
            "flops_batch_size": 1,
            "train_flops_per_image": 10.8e9,
        },
        "speed": {"status": "ok", "throughput_img_s": 1000.0},
        "train": {"status": "ok", "train_img_s": 300.0},
    }
    out = cell_mfu(meas, "fp16", "NVIDIA L4")
    assert out["inference"]["achieved_tflop_s"] == pytest.approx(3.6)
    assert out["inference"]["utilisation"] == pytest.approx(3.6 / 121)
    assert out["training"]["achieved_tflop_s"] == pytest.approx(3.24)
    assert out["training"]["utilisation"] == pytest.approx(3.24 / 121)
    # profile at batch 2: FLOPs are per batch, divided back per image
    meas["profile"] = {**meas["profile"], "flops": 7.2e9, "flops_batch_size": 2}
    assert cell_mfu(meas, "fp16", "NVIDIA L4")["inference"]["utilisation"] == pytest.approx(3.6 / 121)


def test_cell_mfu_missing_parts():
    out = cell_mfu({"speed": {"status": "ok", "throughput_img_s": 10.0}}, "bf16", "NVIDIA H100 PCIe")
    assert out["inference"]["utilisation"] is None and "no forward FLOP count" in out["inference"]["reason"]
    assert "training" not in out
    assert cell_mfu({"speed": {"status": "skipped", "reason": "x"}}, "bf16", "NVIDIA L4") == {}


def test_attach_mfu_records_into_measurements(monkeypatch):
    import torch

    import bench.execution.cell as devices  # where attach_mfu looks the device's name up

    cell = make_cell(resolution=64, batch_size=8, precision="bf16", measure=("profile", "speed", "train"))
    meas = {
        "profile": {"status": "ok", "flops": 2e9, "flops_batch_size": 1, "train_flops_per_image": 6e9},
        "speed": {"status": "ok", "throughput_img_s": 5000.0},
        "train": {"status": "ok", "train_img_s": 1000.0},
    }
    result = CellResult(cell=cell, status="ok", started_at="x", measurements=meas)
    monkeypatch.setattr(devices, "device_name", lambda device: "NVIDIA H100 80GB HBM3")
    attach_mfu(result, torch.device("cpu"))
    assert meas["speed"]["mfu"] == pytest.approx(10e12 / 989.5e12)
    assert meas["train"]["mfu"] == pytest.approx(6e12 / 989.5e12)
    assert meas["speed"]["mfu_reason"] is None and meas["speed"]["peak_precision"] == "bf16"
    row = result.flat_row()
    assert row["speed.mfu"] == pytest.approx(10e12 / 989.5e12) and row["train.achieved_tflop_s"] == pytest.approx(6.0)


def test_attach_mfu_on_this_cpu_is_against_its_measured_peak():
    import torch

    cell = make_cell(resolution=64, batch_size=8, precision="fp32", measure=("profile", "speed"))
    meas = {"profile": {"status": "ok", "flops": 2e9}, "speed": {"status": "ok", "throughput_img_s": 50.0}}
    result = CellResult(cell=cell, status="ok", started_at="x", measurements=meas)
    attach_mfu(result, torch.device("cpu"))
    assert meas["speed"]["mfu_reason"] is None and meas["speed"]["peak_kind"] == "measured"
    assert meas["speed"]["mfu"] == pytest.approx(0.1 / meas["speed"]["peak_tflop_s"])
    assert meas["speed"]["achieved_tflop_s"] == pytest.approx(0.1)
