"""One cell, run in this process: build its model, take each of its measurements, record what failed.

A cell's failure is that cell's alone: any exception while building the model or measuring is caught,
recorded with its type, message and traceback (bench.core.result), and the caller goes on. Where the
cell runs (this process, a fresh child, a Ray worker) is bench.execution.executors' business; every
path ends here.
"""

from __future__ import annotations

import gc
import random
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.cell import Cell
from bench.core.errors import BenchError, SkipCell
from bench.core.result import CellResult
from bench.measure import CellContext, get_measurement
from bench.measure.catalogue import INFERENCE_MFU, TRAINING_MFU
from bench.measure.mfu import cell_mfu
from bench.models.builders import build_model
from bench.models.registry import get_entry
from bench.platform.memory import is_out_of_memory
from bench.platform.peaks import device_name, match_device, measured_cpu_peak


def seed_everything(seed: int) -> None:
    """One seed drives python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _reason(exc: BaseException) -> str:
    """One line for the results table: bench's own errors as they read, others with their type."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if is_out_of_memory(exc):
        return f"out of memory ({text or type(exc).__name__}) — lower the batch size or resolution"
    if isinstance(exc, BenchError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _forget_frames(exc: BaseException) -> None:
    """Drop the frames an exception keeps (they hold the model, its activations and optimizer state), so
    that a failed cell's memory can be released even if the exception object lives on somewhere."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if cur.__traceback__ is not None:
            traceback.clear_frames(cur.__traceback__)
            cur.__traceback__ = None
        cur = cur.__cause__ or cur.__context__


def release_memory(device: torch.device) -> None:
    """After a cell (and above all after an out-of-memory one): collect the cell's objects and hand the
    cached GPU blocks back, so the next cell starts from an empty device."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_cell(
    cell: Cell,
    device: torch.device,
    *,
    base_dir: Path | None = None,
    artifact_dir: Path | None = None,
    epoch_taps: dict[int, Path | None] | None = None,
    tap_results: dict[int, dict[str, Any]] | None = None,
) -> CellResult:
    """Build the cell's model and take each of its measurements; never raises for a cell's own fault
    (KeyboardInterrupt and SystemExit do pass through). `epoch_taps`/`tap_results`: see bench.execution.epochs."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    measurements: dict[str, dict[str, Any]] = {}
    result = CellResult(cell=cell, status="ok", started_at=started, measurements=measurements)
    cudnn_before = torch.backends.cudnn.benchmark
    if cell.cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = cell.cudnn_benchmark
    try:
        _measure_cell(
            cell,
            device,
            result,
            base_dir,
            artifact_dir,
            epoch_taps or {},
            tap_results if tap_results is not None else {},
        )
    finally:
        torch.backends.cudnn.benchmark = cudnn_before
        release_memory(device)  # the model, its optimizer and activations are unreachable by now
    result.duration_s = time.perf_counter() - t0
    result.isolation = "none"
    return result


def _measure_cell(
    cell: Cell,
    device: torch.device,
    result: CellResult,
    base_dir: Path | None,
    artifact_dir: Path | None,
    epoch_taps: dict[int, Path | None],
    tap_results: dict[int, dict[str, Any]],
) -> None:
    # Everything that holds the model lives in this frame, so it is freed when this returns (or raises).
    measurements = result.measurements
    try:
        seed_everything(cell.seed)
        entry = get_entry(cell.model)
        model = build_model(
            cell.model,
            num_classes=cell.num_classes,
            resolution=cell.resolution,
            weights=cell.weights,
            **cell.model_kwargs,
        ).to(device)
    except Exception as exc:  # building the model failed
        result.status, result.reason = "failed", f"build: {_reason(exc)}"
        result.traceback = traceback.format_exc()
        _forget_frames(exc)
        return
    for name in cell.measure:
        ctx = CellContext(
            cell=cell,
            model=model,
            device=device,
            entry=entry,
            base_dir=base_dir or Path.cwd(),
            artifact_dir=artifact_dir,
            epoch_taps=epoch_taps if name == "train" else {},
            tap_results=tap_results,
        )
        try:
            data = get_measurement(name)(cell.settings.get(name)).measure(ctx)
            measurements[name] = {"status": "ok", **data}
        except SkipCell as exc:
            measurements[name] = {"status": "skipped", "reason": str(exc)}
            if result.status == "ok":
                result.status, result.reason = "skipped", f"{name}: {exc}"
        except Exception as exc:  # recorded as this cell's failure; the sweep goes on
            measurements[name] = {"status": "failed", "reason": _reason(exc)}
            result.traceback = (result.traceback or "") + traceback.format_exc()
            if result.status != "failed":
                result.status, result.reason = "failed", f"{name}: {_reason(exc)}"
            _forget_frames(exc)
        finally:
            del ctx
            try:
                model.to(memory_format=torch.contiguous_format)
            except Exception:  # noqa: BLE001 - a model left unusable by its failure is not the next one's problem
                pass


def attach_mfu(result: CellResult, device: torch.device) -> None:
    """Model FLOP utilisation (bench.platform.peaks) into the cell's `speed` and `train` measurements: `mfu` (a
    fraction of the device's dense peak at the cell's precision, or None), `mfu_reason` when None,
    `achieved_tflop_s`, `peak_tflop_s`, `peak_precision`, `peak_kind` (datasheet, or measured on a CPU), `peak_source`
    (the datasheet, or how the peak was measured), `mfu_flops_per_image`. Inference uses the forward FLOPs
    (2 x MACs) per image x img/s; training the forward + backward FLOPs per image x train img/s. A CPU's peak is
    measured once per machine, torch, thread count (the cell's) and precision (bench.platform.peaks.measured_cpu_peak)."""
    try:
        name = device_name(device)
    except Exception:  # noqa: BLE001 - no name, no match: MFU None with the reason below
        name = None
    measured = None
    timed = [m for m in (result.measurements.get("speed"), result.measurements.get("train")) if m]
    if device.type == "cpu" and match_device(name) is None and any(m.get("status") == "ok" for m in timed):
        threads = next((m["threads"] for m in timed if m.get("threads")), None)
        try:
            measured = measured_cpu_peak(result.cell.precision, threads)
        except Exception:  # noqa: BLE001 - no peak: MFU None with the table's reason
            measured = None
    for kind, data in cell_mfu(result.measurements, result.cell.precision, name, measured=measured).items():
        kind_metric = INFERENCE_MFU if kind == "inference" else TRAINING_MFU
        target = result.measurements[kind_metric.measurement]
        target.update(
            {
                kind_metric.key: data["utilisation"],
                "mfu_reason": data["reason"],
                "achieved_tflop_s": data["achieved_tflop_s"],
                "peak_tflop_s": data["peak_tflop_s"],
                "peak_precision": data["peak_precision"],
                "peak_kind": data.get("peak_kind"),
                "peak_source": data.get("peak_source"),
                "mfu_flops_per_image": data["flops_per_image"],
                "mfu_device": name,
            }
        )
