"""Independent cross-check: fvcore (a different counter, TorchScript-trace based) against bench.

fvcore counts one MAC as one "flop" and also counts normalisation/pooling; its matmul-like operators
(conv, linear, matmul, einsum) are compared with bench's MACs. For ViT-B/16 fvcore skips
`aten::scaled_dot_product_attention` (it says so in `unsupported_ops`): its figure is 16.868 G
(16.849 G conv+linear) against bench's 17.564 GMACs, the difference being exactly the attention
(12 layers x 2 x 197^2 x 768 = 0.715 GMACs).
"""

import warnings

import pytest
import torch

fvcore_nn = pytest.importorskip("fvcore.nn")

from bench.measure.flops import count_flops  # noqa: E402
from bench.models.builders import build_model  # noqa: E402

MATMUL_LIKE = ("conv", "linear", "matmul", "einsum", "bmm", "addmm")


def _fvcore(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = fvcore_nn.FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = dict(analysis.by_operator())
        return analysis.total(), by_op, dict(analysis.unsupported_ops())


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "mobilenet_v2"])
def test_cnn_macs_equal_fvcore(name):
    model, x = build_model(name), torch.randn(1, 3, 224, 224)
    _, by_op, _ = _fvcore(model, x)
    assert sum(v for k, v in by_op.items() if k in MATMUL_LIKE) == count_flops(model, x).macs


def test_vit_fvcore_misses_attention_bench_counts_it():
    model, x = build_model("vit_base_patch16_224"), torch.randn(1, 3, 224, 224)
    total, by_op, unsupported = _fvcore(model, x)
    ours = count_flops(model, x)
    attention_macs = 12 * 2 * 197 * 197 * 768
    assert "aten::scaled_dot_product_attention" in unsupported
    assert total / 1e9 == pytest.approx(16.867, abs=1e-3)  # the uncorrected fvcore figure
    fv_matmul = sum(v for k, v in by_op.items() if k in MATMUL_LIKE)
    assert ours.macs == fv_matmul + attention_macs
    assert ours.macs / 1e9 == pytest.approx(17.564, abs=1e-3)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_elementwise_normalisation_and_pooling_equal_fvcore(name):
    """bench's elementwise costs for normalisation and pooling are fvcore's: batch norm (eval, affine) 2 per
    element, adaptive average pooling 1 per input element; exact. The ops fvcore skips (it lists them as
    unsupported: ReLU-free adds, max pool, SiLU, sigmoid, mul) are the ones bench counts as elementwise."""
    model, x = build_model(name), torch.randn(1, 3, 64, 64)
    _, by_op, unsupported = _fvcore(model, x)
    ours = count_flops(model, x)
    assert ours.elementwise_by_op["_native_batch_norm_legit_no_training"] == by_op["batch_norm"]
    assert ours.elementwise_by_op["mean"] == by_op["adaptive_avg_pool2d"]
    skipped = {k.removeprefix("aten::") for k in unsupported} - {"dropout_", "dropout"}
    assert skipped and all(
        op in ours.elementwise_by_op or f"{op}_with_indices" in ours.elementwise_by_op for op in skipped
    )
    assert ours.uncounted == {}
