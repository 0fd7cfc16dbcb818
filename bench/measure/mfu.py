"""Model FLOP utilisation of a cell's measurements: its FLOP counts (`profile`) x its speeds (`speed`, `train`)
over the device's peak (bench.platform.peaks, which explains the peaks and what MFU counts): a GPU's datasheet
peak, or a CPU's measured one (a dense matmul at the cell's precision and thread count)."""

from __future__ import annotations

from typing import Any

from bench.measure.catalogue import FLOPS, FLOPS_BATCH_SIZE, THROUGHPUT, TRAIN_FLOPS_PER_IMAGE, TRAIN_THROUGHPUT
from bench.platform.peaks import mfu


def _one_mfu(
    per_image: float | None,
    img_s: float,
    name: str | None,
    precision: str,
    tf32_allowed: bool | None,
    *,
    what: str,
    missing: str,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`mfu` of FLOPs per image x images per second, with what was counted and, without a FLOP count, why."""
    m = mfu(per_image * img_s if per_image else None, name, precision, tf32_allowed, measured)
    m.update(flops_per_image=per_image, img_s=img_s, what=what)
    if per_image is None and (m["reason"] or "").startswith("no achieved"):
        m["reason"] = missing
    return m


def cell_mfu(
    measurements: dict[str, dict[str, Any]],
    precision: str,
    name: str | None,
    tf32_allowed: bool | None = None,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """MFU of one cell's measurements, for inference (`speed`) and training (`train`):
    {'inference': {...}, 'training': {...}} (each as `mfu` returns; absent when the measurement is).
    `measured`: the device's measured peak (a CPU's, bench.platform.peaks.measured_cpu_peak)."""
    prof = measurements.get(FLOPS.measurement) or {}
    out: dict[str, Any] = {}
    speed = measurements.get(THROUGHPUT.measurement) or {}
    if speed.get("status", "ok") == "ok" and THROUGHPUT.key in speed:
        flops = prof.get(FLOPS.key)
        out["inference"] = _one_mfu(
            flops / prof.get(FLOPS_BATCH_SIZE.key, 1) if flops else None,
            speed[THROUGHPUT.key],
            name,
            precision,
            tf32_allowed,
            what="forward FLOPs per image (2 x MACs) x inference img/s",
            missing="no forward FLOP count (the cell has no profile measurement)",
            measured=measured,
        )
    train = measurements.get(TRAIN_THROUGHPUT.measurement) or {}
    if train.get("status", "ok") == "ok" and TRAIN_THROUGHPUT.key in train:
        out["training"] = _one_mfu(
            prof.get(TRAIN_FLOPS_PER_IMAGE.key),
            train[TRAIN_THROUGHPUT.key],
            name,
            precision,
            tf32_allowed,
            what="training FLOPs per image (forward + backward) x train img/s",
            missing=f"no training FLOP count ({TRAIN_FLOPS_PER_IMAGE.path} missing)",
            measured=measured,
        )
    return out
