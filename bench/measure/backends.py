"""Deployment backends for `speed` cells: `backend: onnxruntime` beside eager PyTorch.

The cell's model is exported with `torch.onnx` (the TorchScript exporter where this torch has it, else the
dynamo one; the exporter and the opset are recorded), a batch dimension left dynamic, and run by ONNX
Runtime (the CPU provider; CUDA's on a GPU where onnxruntime-gpu provides it). Before anything is timed,
eager and ONNX Runtime run one fixed batch of `AGREEMENT_BATCH` images (seeded, the cell's resolution):
the largest absolute logit difference relative to the eager logits' range, and the share of images whose
top-1 class agrees, are recorded; beyond `speed.backend_tolerance` (1e-3 of the range) or below
`speed.backend_min_top1` (31 of 32: random weights leave near ties) the cell fails with both figures.

ONNX Runtime runs fp32 here: another precision, channels_last or compile with it is an error naming the
setting. The `onnx` extra installs onnx and onnxruntime.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.core.errors import BenchError, InputError
from bench.platform.device import evaluating

EAGER, ONNXRUNTIME = "eager", "onnxruntime"
BACKENDS = (EAGER, ONNXRUNTIME)
AGREEMENT_BATCH = 32
AGREEMENT_SEED = 0
DEFAULT_OPSET = 17


class BackendDisagrees(BenchError):
    """The backend's logits differ from eager PyTorch's beyond the stated tolerance: the cell fails."""


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise InputError(
            "backend onnxruntime needs onnxruntime", field="matrix.backend", hint="pip install 'bench[onnx]'"
        ) from exc
    return onnxruntime


def check_cell(precision: str, channels_last: bool, compile: bool) -> None:
    """What ONNX Runtime cells support here: fp32, contiguous, not compiled."""
    if precision != "fp32":
        raise InputError(
            f"backend onnxruntime runs fp32 only, not {precision}",
            field="matrix.backend",
            hint="exclude {backend: onnxruntime, precision: " + precision + "}",
        )
    if channels_last or compile:
        what = "channels_last" if channels_last else "compile"
        raise InputError(
            f"backend onnxruntime does not take {what}",
            field="matrix.backend",
            hint=f"exclude {{backend: onnxruntime, {what}: true}}",
        )


def export(model: torch.nn.Module, example: torch.Tensor, opset: int = DEFAULT_OPSET) -> tuple[bytes, dict[str, Any]]:
    """The model as ONNX bytes (batch dimension dynamic), and how it was exported."""
    start = time.perf_counter()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                model,
                (example,),
                buf,  # type: ignore[arg-type]  # a file-like object works; the stubs name paths only
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            exporter, data = "torchscript", buf.getvalue()
        except (TypeError, RuntimeError, ImportError):  # a torch without the TorchScript exporter
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, dynamic_shapes=({0: torch.export.Dim("batch")},)
            )
            assert program is not None
            exporter, data = "dynamo", program.model_proto.SerializeToString()
    info = {"exporter": exporter, "opset": _opset(data, opset), "export_s": time.perf_counter() - start}
    info["onnx_mb"] = len(data) / 2**20
    return data, info


def _opset(data: bytes, asked: int) -> int:
    try:
        import onnx
    except ImportError:
        return asked
    proto = onnx.load_from_string(data)
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), asked)


def session(data: bytes, device: torch.device, threads: int) -> tuple[Any, str]:
    """An ONNX Runtime session on the cell's device: (session, provider used)."""
    ort = _import_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # as many as torch uses, so the comparison is like for like
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    sess = ort.InferenceSession(data, options, providers=providers)
    return sess, sess.get_providers()[0]


def agreement(model: torch.nn.Module, sess: Any, resolution: int, device: torch.device) -> dict[str, Any]:
    """Eager against ONNX Runtime on one fixed batch: max |Δlogit| / the logits' range, and top-1 agreement."""
    gen = torch.Generator().manual_seed(AGREEMENT_SEED)
    x = torch.randn(AGREEMENT_BATCH, 3, resolution, resolution, generator=gen)
    with torch.inference_mode():
        eager = model(x.to(device)).float().cpu().numpy()
    ort_logits = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    span = float(eager.max() - eager.min()) or 1.0
    diff = float(np.abs(ort_logits - eager).max())
    agree = int((ort_logits.argmax(1) == eager.argmax(1)).sum())
    return {
        "images": AGREEMENT_BATCH,
        "max_abs_logit_diff": diff,
        "logit_range": span,
        "relative_diff": diff / span,
        "top1_agree": agree,
        "top1_agreement": agree / AGREEMENT_BATCH,
    }


def judge(found: dict[str, Any], tolerance: float, min_top1: float) -> None:
    """Fail the cell when the backend disagrees with eager beyond the tolerance."""
    problems = []
    if found["relative_diff"] > tolerance:
        problems.append(f"max |Δlogit| is {found['relative_diff']:.2e} of the logits' range (tolerance {tolerance:g})")
    if found["top1_agreement"] < min_top1:
        problems.append(
            f"top-1 agrees on {found['top1_agree']} of {found['images']} images (at least {min_top1:.1%} asked)"
        )
    if problems:
        raise BackendDisagrees(
            "onnxruntime disagrees with eager PyTorch: "
            + "; ".join(problems)
            + " — check the export, or set speed.backend_tolerance"
        )


def onnxruntime_call(
    model: torch.nn.Module, x: torch.Tensor, device: torch.device, *, tolerance: float, min_top1: float
) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Export, check agreement, and the callable that runs the timed batch `x` in ONNX Runtime."""
    with evaluating(model):
        data, info = export(model, x[:1])
        sess, provider = session(data, device, torch.get_num_threads())
        found = agreement(model, sess, int(x.shape[-1]), device)
    info.update(provider=provider, agreement=found, tolerance=tolerance, min_top1=min_top1)
    judge(found, tolerance, min_top1)
    feed = {sess.get_inputs()[0].name: x.detach().cpu().numpy()}
    return lambda: sess.run(None, feed), info
