"""The report's efficiency section: energy per image where it was measured, and what a million images cost.

One row per speed configuration (model, resolution, batch, precision, memory format, compile, backend; seeds and
training strategies share one speed figure, the median over their cells): img/s, J/image and img/J
(bench.measure.energy; or why energy is unavailable), the training steps' J/image where measured, machine-hours per million images from time alone,
the cost from the suite's `costs.price_per_hour`, CO2 from `costs.grid_gco2_per_kwh` x J/image, and the
best macro-F1 among the configuration's cells that trained. The section registers in
bench.report.sections, which adds the macro-F1 against J/image figure.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.core.result import CellResult
from bench.measure.catalogue import ENERGY_PER_IMAGE, IMAGES_PER_JOULE, MACRO_F1, THROUGHPUT, TRAIN_ENERGY_PER_IMAGE
from bench.measure.energy import co2_grams_per_million_images, cost_per_million_images
from bench.report.data import RunData

_SPEED_CONFIG = ("model", "resolution", "batch_size", "precision", "channels_last", "compile", "backend")


def _get(r: CellResult, measurement: str, key: str) -> Any:
    return r.measurements.get(measurement, {}).get(key)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def efficiency_data(run: RunData) -> dict[str, Any] | None:
    """Rows for the section, or None when no cell measured speed."""
    groups: dict[tuple, list[CellResult]] = {}
    for r in run.ok:
        if _get(r, THROUGHPUT.measurement, THROUGHPUT.key) is None:
            continue
        key = tuple(getattr(r.cell, f) for f in _SPEED_CONFIG) + (tuple(sorted(r.cell.axes.items())),)
        groups.setdefault(key, []).append(r)
    if not groups:
        return None
    costs = run.suite.get("costs") or {}
    price, grid = costs.get("price_per_hour"), costs.get("grid_gco2_per_kwh")
    currency = costs.get("currency") or "USD"
    rows, reasons, notes = [], [], []
    estimate = shared = False
    for members in groups.values():
        first = members[0].cell
        img_s = _median([_get(r, THROUGHPUT.measurement, THROUGHPUT.key) for r in members])
        jpi = _median([v for r in members if (v := _get(r, ENERGY_PER_IMAGE.measurement, ENERGY_PER_IMAGE.key))])
        ipj = _median([v for r in members if (v := _get(r, IMAGES_PER_JOULE.measurement, IMAGES_PER_JOULE.key))])
        train_jpi = _median([v for r in members if (v := TRAIN_ENERGY_PER_IMAGE.number(r))])
        for r in members:
            for energy in (_get(r, "speed", "energy") or {}, _get(r, "train", "energy") or {}):
                if energy.get("unavailable") and energy["unavailable"] not in reasons:
                    reasons.append(energy["unavailable"])
            for note in energy.get("notes") or []:
                if note not in notes:
                    notes.append(note)
            estimate |= bool(energy.get("estimate"))
            shared |= bool(energy.get("shared_machine"))
        f1s = [v for r in members if (v := _get(r, MACRO_F1.measurement, MACRO_F1.key)) is not None]
        extras = "".join(
            [
                " +channels_last" if first.channels_last else "",
                " +compile" if first.compile else "",
                "" if first.backend == "eager" else f" {first.backend}",
            ]
        )
        swept = "".join(f" {k}={v}" for k, v in first.axes.items() if k not in ("seed", "strategy"))
        rows.append(
            {
                "model": first.model,
                "config": f"{first.resolution}px bs={first.batch_size} {first.precision}{extras}{swept}",
                "img_s": img_s,
                "j_per_image": jpi,
                "img_per_j": ipj,
                "train_j_per_image": train_jpi,
                "hours_per_million": 1e6 / img_s / 3600 if img_s else None,
                "cost_per_million": cost_per_million_images(img_s, price),
                "co2_g_per_million": co2_grams_per_million_images(jpi, grid),
                "best_f1": max(f1s) if f1s else None,
                "cells": len(members),
            }
        )
    rows.sort(key=lambda row: -float(row["img_s"] or 0))
    return {
        "rows": rows,
        "has_energy": any(r["j_per_image"] is not None for r in rows),
        "has_train_energy": any(r["train_j_per_image"] is not None for r in rows),
        "has_f1": any(r["best_f1"] is not None for r in rows),
        "price": price,
        "currency": currency,
        "grid": grid,
        "energy_reasons": reasons,
        "energy_notes": notes,
        "estimate": estimate,
        "shared": shared,
        "figure": None,
    }
