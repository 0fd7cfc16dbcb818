"""FLOPs and params against published tables, and the attention handles against explicit matmuls.

Convention under test: MACs = multiply-accumulates, FLOPs = 2 x MACs.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bench.measure.flops import count_flops, count_params
from bench.measure.published import EFFICIENTNET_TABLE2
from bench.models import get_entry
from bench.models.builders import build_model


def _profile(name: str, resolution: int | None = None):
    model = build_model(name)
    res = resolution or get_entry(name).native_resolution
    count = count_flops(model, torch.randn(1, 3, res, res))
    total, _ = count_params(model)
    return total, count


# The paper prints 2 significant figures ("1.0B" covers 0.95-1.05B: up to 5% from rounding alone).
# torchvision's B0-B7 follow the paper's architecture at the paper's resolutions; measured ratios to the
# table (MACs): B0 0.989, B1 0.981, B2 0.994, B3 1.015, B4 1.046, B5 1.037, B6 1.004, B7 1.020; params:
# 0.99-1.019. Both are held to 5%, the table's rounding: B4 (4.39 vs "4.2") is the closest to the limit,
# a real difference of the TF reference's "SAME" padding and channel rounding, not a counting gap.
@pytest.mark.parametrize("name", sorted(EFFICIENTNET_TABLE2))
def test_efficientnet_matches_paper_table2(name):
    params_paper, macs_paper = EFFICIENTNET_TABLE2[name]
    params, count = _profile(name)
    assert params == pytest.approx(params_paper, rel=0.05), (name, params)
    assert count.macs == pytest.approx(macs_paper, rel=0.05), (name, count.macs)
    assert count.flops == 2 * count.macs


# torchvision documents "GFLOPS" (in fact GMACs, 3 decimals) for each model, in its weights metadata
# (`_ops`) that its docs are generated from. Agreement is held to 0.1%: rounding to 3 decimals only.
@pytest.mark.parametrize(
    "bench_name, tv_name",
    [
        ("resnet50", "resnet50"),
        ("wide_resnet50_2", "wide_resnet50_2"),
        ("vgg16", "vgg16"),
        ("mobilenet_v2", "mobilenet_v2"),
        ("torchvision:vit_b_16", "vit_b_16"),
        ("vit_base_patch16_224", "vit_b_16"),  # timm's ViT-B/16: same architecture, fused SDPA attention
        ("efficientnet_b0", "efficientnet_b0"),
        ("efficientnet_b7", "efficientnet_b7"),
    ],
)
def test_matches_torchvision_documented_gflops(bench_name, tv_name):
    meta = torchvision.models.get_model_weights(tv_name).DEFAULT.meta
    params, count = _profile(bench_name)
    assert count.macs / 1e9 == pytest.approx(meta["_ops"], rel=1e-3, abs=6e-4)
    if bench_name.startswith("torchvision:") or bench_name == tv_name:
        assert params == meta["num_params"]


def test_vit_b16_includes_attention_that_plain_counter_misses():
    """ViT-B/16: 17.56 GMACs with attention; torch's FlopCounterMode alone gives 16.85 (timm, SDPA)
    and 11.27 (torchvision, fused MHA fast path): the handles supply exactly the difference."""
    from torch.utils.flop_counter import FlopCounterMode

    for name in ("vit_base_patch16_224", "torchvision:vit_b_16"):
        model = build_model(name)
        x = torch.randn(1, 3, 224, 224)
        plain = FlopCounterMode(display=False)
        with plain, torch.inference_mode():
            model(x)
        ours = count_flops(model, x)
        # attention alone: 12 layers x (QK^T + AV) = 12 x 2 x 197^2 x 768 MACs
        attention_macs = 12 * 2 * 197 * 197 * 768
        assert ours.macs / 1e9 == pytest.approx(17.564, abs=1e-3)
        assert ours.macs - plain.get_total_flops() // 2 >= attention_macs


class ExplicitAttention(nn.Module):
    """Attention written as matmuls (counted natively) — the reference for the SDPA handle."""

    def forward(self, q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return scores.softmax(-1) @ v


class FusedAttention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("shape", [(1, 3, 7, 16), (2, 4, 197, 64)])
def test_sdpa_handle_equals_explicit_matmuls(shape):
    q, k, v = (torch.randn(*shape) for _ in range(3))
    fused = count_flops(FusedAttention(), q, k, v)
    explicit = count_flops(ExplicitAttention(), q, k, v)
    b, h, n, d = shape
    assert fused.flops == explicit.flops == 2 * (2 * b * h * n * n * d)


def test_sdpa_backward_counted():
    """One "unit" = one (n x d)(d x n)-sized matmul = 2*b*h*n*n*d FLOPs. The explicit version does 2 in the
    forward and 4 in the backward; the fused (flash) backward also recomputes QK^T: 5."""
    b, h, n, d = 1, 2, 9, 8
    unit = 2 * b * h * n * n * d
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    fused = count_flops(FusedAttention(), q, k, v, backward=True)
    explicit = count_flops(ExplicitAttention(), q, k, v, backward=True)
    assert explicit.flops == 6 * unit
    assert fused.by_op["_scaled_dot_product_flash_attention_for_cpu"] == 2 * unit
    assert fused.by_op["_scaled_dot_product_flash_attention_for_cpu_backward"] == 5 * unit


def test_native_mha_handle_equals_unfused_path():
    """nn.MultiheadAttention: the fused inference fast path (one aten op) counts the same as the
    unfused path (separate linears + attention) that runs with grad enabled."""
    mha = nn.MultiheadAttention(embed_dim=32, num_heads=4, batch_first=True).eval()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    x = torch.randn(2, 10, 32)
    fused = count_flops(Block(), x)  # inference_mode: fast path
    assert "_native_multi_head_attention" in fused.by_op
    unfused = count_flops(Block(), x.requires_grad_(), backward=True)
    unfused_forward = unfused.by_op.get("addmm", 0) + unfused.by_op.get("mm", 0) + unfused.by_op.get("bmm", 0)
    b, n, e = 2, 10, 32
    expected = 2 * (4 * b * n * e * e) + 2 * (2 * b * n * n * e)  # 4 projections + QK^T and AV
    assert fused.flops == expected
    assert unfused_forward >= expected  # the unfused count includes backward matmuls too


def test_uncounted_ops_are_listed_not_dropped():
    """Normalisation, activations and pooling have no MAC formula: they are costed apart as elementwise work
    (issue 9), never dropped; an op with no formula at all is listed (test_fidelity.py)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1)).eval()
    count = count_flops(model, torch.randn(1, 3, 8, 8))
    assert count.by_op == {"convolution": 2 * 4 * 3 * 3 * 3 * 6 * 6}
    outputs = 4 * 6 * 6  # the conv's output elements
    assert count.elementwise_by_op == {
        "_native_batch_norm_legit_no_training": 2 * outputs,
        "relu": outputs,
        "mean": outputs,
    }
    assert count.uncounted == {}


def test_params_count_shared_parameters_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, lin)
    assert count_params(model) == (20, 20)
    lin.bias.requires_grad_(False)
    assert count_params(model) == (20, 16)
