"""MACs and FLOPs of one forward pass, with every matmul-like op counted, attention included.

Convention (stated in every output): **1 MAC = one multiply-accumulate; FLOPs = 2 × MACs.** Published
tables mostly give MACs under the name "FLOPs" (the EfficientNet paper, torchvision's "GFLOPS", fvcore);
bench reports both, named unambiguously.

The counter is torch's own `FlopCounterMode` (dispatch level, so it sees what really runs) plus handles
for ops it has no formula for, which would otherwise count as zero:

- `aten._scaled_dot_product_flash_attention_for_cpu` (+ backward): what `F.scaled_dot_product_attention`
  becomes on the CPU, e.g. in timm's ViT (`fused_attn`). Unhandled, ViT-B/16 loses 0.72 GMACs.
- `aten._native_multi_head_attention`: the fused fast path of `nn.MultiheadAttention` in inference,
  e.g. torchvision's ViT. Unhandled, ViT-B/16 loses the q/k/v/out projections *and* the attention
  (6.3 of 17.6 GMACs).

Elementwise ops, normalisation and pooling are costed apart (`FlopCount.elementwise_by_op`: one FLOP per
element, fvcore's costs for normalisation and pooling) and never added to the MAC headline, which stays
comparable with published tables. Any other op that does work and has no formula is listed in
`FlopCount.uncounted` with its calls and output size, and `uncounted_share` estimates the share of the
model's work it may represent (one FLOP per output element), so nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from bench.measure.catalogue import FLOPS, MACS

aten = torch.ops.aten

DEFINITION = "MACs = multiply-accumulates of conv/matmul/attention; FLOPs = 2 x MACs"


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _native_mha_flop(
    query_shape, key_shape, value_shape, embed_dim: int, num_head: int, *args: Any, out_shape=None, **kwargs: Any
) -> int:
    """Fused MHA = q/k/v projections + scaled-dot-product attention + output projection."""
    batch = math.prod(query_shape[:-2])
    len_q, len_k = query_shape[-2], key_shape[-2]
    e = embed_dim
    head_dim = e // num_head
    projections = 2 * batch * (len_q * e * e + 2 * len_k * e * e + len_q * e * e)
    attention = sdpa_flop_count(
        (batch, num_head, len_q, head_dim), (batch, num_head, len_k, head_dim), (batch, num_head, len_k, head_dim)
    )
    return projections + attention


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs: Any,
) -> int:
    """torch's own formula ignores `groups` (a depthwise conv's backward comes out ~groups x too big:
    mobilenet_v2's training FLOPs 17x its forward instead of 3x). Each of grad_input and grad_weight costs
    exactly the forward's MACs, whatever the groups."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=bool(transposed))
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


CORRECTED_FORMULAS = {aten.convolution_backward: _conv_backward_flop}

EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
    aten._native_multi_head_attention: _native_mha_flop,
}

# Ops that move or reinterpret data without arithmetic: not "uncounted work".
_NO_WORK = {
    "view",
    "_unsafe_view",
    "reshape",
    "permute",
    "transpose",
    "t",
    "expand",
    "select",
    "slice",
    "unbind",
    "cat",
    "stack",
    "flatten",
    "clone",
    "detach",
    "alias",
    "_to_copy",
    "copy_",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "randn",
    "rand",
    "fill_",
    "zero_",
    "lift_fresh",
    "squeeze",
    "unsqueeze",
    "split",
    "split_with_sizes",
    "contiguous",
    "as_strided",
    "index_select",
    "_reshape_alias",
    "unflatten",
    "lift_fresh_copy",
    "dropout",
    "native_dropout",
    "slice_backward",
    "select_backward",
    "new_zeros",
    "new_ones",
    "scalar_tensor",
    "full",
    "arange",
    "detach_",
    "set_",
    "resize_",
    "_local_scalar_dense",
    "masked_fill",
    "where",
    "constant_pad_nd",
    "roll",
    "pad",
    "repeat",
    "_has_compatible_shallow_copy_type",
    "_pin_memory",
    "is_pinned",
    "item",
}


# -- elementwise work: counted apart from MACs ----------------------------------------------------------
# Convention (fvcore's for normalisation and pooling, one per element otherwise; the softmax inside fused
# attention 3 per score, as a plain softmax): these FLOPs are reported
# as `elementwise_flops`, never added to the MAC/FLOP headline, so that stays comparable with published
# tables. Transcendentals (sigmoid, GELU, exp) count one per element: a lower bound.
_PER_OUTPUT_ELEMENT = {  # op -> FLOPs per output element
    "add": 1,
    "sub": 1,
    "mul": 1,
    "div": 1,
    "rsub": 1,
    "neg": 1,
    "abs": 1,
    "pow": 1,
    "sqrt": 1,
    "rsqrt": 1,
    "exp": 1,
    "log": 1,
    "erf": 1,
    "tanh": 1,
    "sigmoid": 1,
    "relu": 1,
    "relu6": 1,
    "gelu": 1,
    "silu": 1,
    "hardswish": 1,
    "hardsigmoid": 1,
    "hardtanh": 1,
    "leaky_relu": 1,
    "elu": 1,
    "mish": 1,
    "clamp": 1,
    "clamp_min": 1,
    "clamp_max": 1,
    "threshold": 1,
    "addcmul": 2,
    "addcdiv": 2,
    "lerp": 2,
    "_softmax": 3,
    "_log_softmax": 3,
    "softmax": 3,
    "log_softmax": 3,  # exp, sum, divide
    "upsample_nearest2d": 1,
    "upsample_bilinear2d": 4,  # fvcore's upsample costs
}
_PER_INPUT_ELEMENT = {  # reductions and pooling: one per input element (fvcore's adaptive_avg_pool2d)
    "mean": 1,
    "sum": 1,
    "amax": 1,
    "max": 1,
    "avg_pool2d": 1,
    "adaptive_avg_pool2d": 1,
    "_adaptive_avg_pool2d": 1,
    "max_pool2d": 1,
    "max_pool2d_with_indices": 1,
    "adaptive_max_pool2d": 1,
}
# Normalisation (fvcore's costs): batch norm in eval 2 per element with affine (1 without), 4 in training;
# layer/group/instance norm 5 per element with affine (4 without).
_BATCH_NORM = {
    "_native_batch_norm_legit_no_training": False,
    "_native_batch_norm_legit": True,
    "native_batch_norm": None,
    "batch_norm": None,
    "_batch_norm_impl_index": None,
}
_OTHER_NORM = {
    "native_layer_norm": 2,
    "layer_norm": 2,
    "native_group_norm": 1,
    "group_norm": 1,
    "instance_norm": 1,
}  # op -> index of its weight argument


def _numel(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0].numel()
    return 0


def elementwise_cost(func, args: tuple, out: Any) -> int | None:
    """FLOPs of one call of an elementwise / normalisation / pooling op, or None when the op is not one."""
    name = func._overloadpacket.__name__
    base = name.rstrip("_") if not name.startswith("_") else name
    first_in = next((a for a in args if isinstance(a, torch.Tensor)), None)
    n_in = first_in.numel() if first_in is not None else 0
    if name in _BATCH_NORM:
        training = _BATCH_NORM[name]
        if training is None:  # native_batch_norm(input, weight, bias, mean, var, training, ...)
            training = bool(args[5]) if len(args) > 5 else False
        if training:
            return 4 * n_in
        affine = len(args) > 1 and isinstance(args[1], torch.Tensor)
        return (2 if affine else 1) * n_in
    if name in _OTHER_NORM:
        i = _OTHER_NORM[name]
        affine = len(args) > i and isinstance(args[i], torch.Tensor)
        return (5 if affine else 4) * n_in
    if base in _PER_INPUT_ELEMENT:
        return _PER_INPUT_ELEMENT[base] * n_in
    if base in _PER_OUTPUT_ELEMENT:
        return _PER_OUTPUT_ELEMENT[base] * _numel(out)
    if torch.Tag.pointwise in getattr(func, "tags", ()):
        return _numel(out)
    return None


def _fused_attention_scores(name: str, args: tuple) -> int:
    """The number of attention scores (batch x heads x Lq x Lk) a fused attention op softmaxes; 0 if not one."""
    if name.startswith("_scaled_dot_product") and "backward" not in name and len(args) >= 2:
        q, k = args[0], args[1]
        if isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and q.dim() >= 2:
            return math.prod(q.shape[:-1]) * k.shape[-2]
    if name == "_native_multi_head_attention" and len(args) >= 5:
        q, k, heads = args[0], args[1], args[4]
        if isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor):
            return math.prod(q.shape[:-1]) * int(heads) * k.shape[-2]
    return 0


@dataclass
class FlopCount:
    """Plain data: total FLOPs (= 2 x MACs), per-op FLOPs; elementwise FLOPs apart; ops that did work
    bench has no formula for (`uncounted`), with their calls, output elements and estimated FLOPs."""

    flops: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, dict[str, int]] = field(default_factory=dict)
    elementwise_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def elementwise_flops(self) -> int:
        return sum(self.elementwise_by_op.values())

    @property
    def uncounted_flops_estimate(self) -> int:
        """What the uncounted ops may cost: one FLOP per output element each (their size, not a formula)."""
        return sum(v["output_elements"] for v in self.uncounted.values())

    @property
    def all_work(self) -> int:
        return self.flops + self.elementwise_flops + self.uncounted_flops_estimate

    @property
    def elementwise_share(self) -> float:
        """Elementwise FLOPs over all the work seen (MAC FLOPs + elementwise + uncounted estimate)."""
        return self.elementwise_flops / self.all_work if self.all_work else 0.0

    @property
    def uncounted_share(self) -> float:
        """The share of the work that ops without a formula may represent (by their output size)."""
        return self.uncounted_flops_estimate / self.all_work if self.all_work else 0.0

    @property
    def handled_macs(self) -> int:
        """MACs counted only thanks to bench's handles (EXTRA_FORMULAS): what a plain counter misses."""
        names = {str(op.__name__) for op in EXTRA_FORMULAS}
        return sum(v for k, v in self.by_op.items() if k in names) // 2

    def to_dict(self) -> dict[str, Any]:
        return {
            FLOPS.key: self.flops,
            MACS.key: self.macs,
            "by_op": self.by_op,
            "uncounted": self.uncounted,
            "elementwise_by_op": self.elementwise_by_op,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlopCount:
        return cls(
            flops=int(data[FLOPS.key]),
            by_op=dict(data.get("by_op") or {}),
            uncounted=dict(data.get("uncounted") or {}),
            elementwise_by_op=dict(data.get("elementwise_by_op") or {}),
        )


class _Recorder(TorchDispatchMode):
    """Sits under FlopCounterMode and sees the leaf ops it executes: elementwise ones are costed apart,
    those with no formula at all are noted (calls, output elements)."""

    def __init__(self, counted: set) -> None:
        super().__init__()
        self.counted = counted
        self.calls: Counter[str] = Counter()
        self.elements: Counter[str] = Counter()
        self.elementwise: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        name = packet.__name__
        if packet in self.counted:
            scores = _fused_attention_scores(name, args)
            if scores:  # the softmax inside fused attention: elementwise work the MAC formula leaves out
                self.elementwise[f"{name}.softmax"] += 3 * scores
            return out
        if name.rstrip("_") in _NO_WORK or name in _NO_WORK:
            return out
        cost = elementwise_cost(func, args, out)
        if cost is not None:
            self.elementwise[name] += cost
            return out
        self.calls[name] += 1
        self.elements[name] += _numel(out)
        return out


def count_flops(model: torch.nn.Module, *inputs: torch.Tensor, backward: bool = False) -> FlopCount:
    """Count one forward pass (and the backward of `.sum()` of the output when `backward`).

    The forward runs under `torch.inference_mode()` unless `backward`, so the counted path is the one that
    inference speed measurements time (e.g. the fused MHA fast path).
    """
    counter = FlopCounterMode(display=False, custom_mapping={**EXTRA_FORMULAS, **CORRECTED_FORMULAS})
    recorder = _Recorder(set(counter.flop_registry))
    with recorder, counter:
        if backward:
            out = model(*inputs)
            (out if isinstance(out, torch.Tensor) else out[0]).float().sum().backward()
        else:
            with torch.inference_mode():
                model(*inputs)
    by_op = {str(k).removeprefix("aten."): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    uncounted = {
        name: {"calls": recorder.calls[name], "output_elements": recorder.elements[name]}
        for name in sorted(recorder.calls)
    }
    return FlopCount(
        flops=int(counter.get_total_flops()),
        by_op=by_op,
        uncounted=uncounted,
        elementwise_by_op=dict(sorted(recorder.elementwise.items())),
    )


def count_train_flops(model: torch.nn.Module, x: torch.Tensor) -> FlopCount:
    """Forward + backward FLOPs of one training step's model work on `x` (loss and optimizer left out).

    Leaves the model as it found it: eval/train mode, BN running statistics (counted in eval mode, which
    changes no matmul/conv FLOP), the parameters' `.grad` and the RNG state."""
    was_training = model.training
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params]
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), torch.enable_grad():
            for p in params:
                p.grad = None
            return count_flops(model, x, backward=True)
    finally:
        for p, g in zip(params, grads):
            p.grad = g
        model.train(was_training)


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared parameters counted once."""
    seen: dict[int, torch.nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return total, trainable
