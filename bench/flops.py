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

Ops that do work but have no formula (elementwise, normalisation, pooling, ...) are listed in
`FlopCount.uncounted` with their output sizes, so nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

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


EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
    aten._native_multi_head_attention: _native_mha_flop,
}

# Ops that move or reinterpret data without arithmetic: not "uncounted work".
_NO_WORK = {
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "select", "slice", "unbind",
    "cat", "stack", "flatten", "clone", "detach", "alias", "_to_copy", "copy_", "empty", "empty_like",
    "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "ones", "ones_like", "randn",
    "rand", "fill_", "zero_", "lift_fresh", "squeeze", "unsqueeze", "split", "split_with_sizes", "contiguous",
    "as_strided", "index_select", "_reshape_alias", "unflatten", "lift_fresh_copy", "dropout", "native_dropout",
    "slice_backward", "select_backward", "new_zeros", "new_ones", "scalar_tensor", "full", "arange",
    "detach_", "set_", "resize_", "_local_scalar_dense", "masked_fill", "where", "constant_pad_nd", "roll",
    "pad", "repeat", "_has_compatible_shallow_copy_type", "_pin_memory", "is_pinned", "item",
}


@dataclass
class FlopCount:
    """Plain data: total FLOPs (= 2 x MACs), per-op FLOPs, and ops that did work uncounted."""

    flops: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def handled_macs(self) -> int:
        """MACs counted only thanks to bench's handles (EXTRA_FORMULAS): what a plain counter misses."""
        names = {str(op.__name__) for op in EXTRA_FORMULAS}
        return sum(v for k, v in self.by_op.items() if k in names) // 2

    def to_dict(self) -> dict[str, Any]:
        return {"flops": self.flops, "macs": self.macs, "by_op": self.by_op, "uncounted": self.uncounted}


class _Recorder(TorchDispatchMode):
    """Sits under FlopCounterMode and sees the leaf ops it executes; notes those without a formula."""

    def __init__(self, counted: set) -> None:
        super().__init__()
        self.counted = counted
        self.calls: Counter[str] = Counter()
        self.elements: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        name = packet.__name__
        if packet not in self.counted and name.rstrip("_") not in _NO_WORK and name not in _NO_WORK:
            self.calls[name] += 1
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(first, torch.Tensor):
                self.elements[name] += first.numel()
        return out


def count_flops(model: torch.nn.Module, *inputs: torch.Tensor, backward: bool = False) -> FlopCount:
    """Count one forward pass (and the backward of `.sum()` of the output when `backward`).

    The forward runs under `torch.inference_mode()` unless `backward`, so the counted path is the one that
    inference speed measurements time (e.g. the fused MHA fast path).
    """
    counter = FlopCounterMode(display=False, custom_mapping=dict(EXTRA_FORMULAS))
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
    return FlopCount(flops=int(counter.get_total_flops()), by_op=by_op, uncounted=uncounted)


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared parameters counted once."""
    seen: dict[int, torch.nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return total, trainable
