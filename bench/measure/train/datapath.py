"""End-to-end inference speed: the test images through the real data path, beside the model alone.

`speed` (like timm's benchmark.py and optimum-benchmark) feeds the model a tensor already in memory; a model
that is fast on tensors can still be starved by decoding (mlcommons/inference #954). For a cell that trains,
bench also times inference as a deployment runs it: the test split's images read from their files, decoded,
resized, normalised and batched (bench.data.streamed, `workers` loader processes as the training data
settings say; 0: in this process), then the model at the cell's precision. Each batch's wait for its data
and its model time are timed apart, so one loop gives three figures side by side:

- `end_to_end_img_s`: images / (their data waits + model times): a stream's rate;
- `model_only_img_s`: images / their model times (real images, already decoded);
- `end_to_end_ratio` = end-to-end / model-only (1: the data path costs nothing; 0.5: it halves throughput),
  and `data_path_share` = the data waits' share of the whole: 1 - the ratio. Totals, not per-batch medians,
  so that the parts add up (a median of sums is not the sum of medians: on a loaded machine the two
  disagreed by half); per-batch medians of each part are in `data_path`.

The first batch (the loader's start-up, the first model call) is not timed; the test images are read again
from the start until both `min_time_s` and `min_batches` are reached.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.core.stats import Stats
from bench.data.base import SampleSet
from bench.data.streamed import StreamedImages, streamed_loader
from bench.measure.catalogue import DATA_PATH_SHARE, END_TO_END_RATIO, END_TO_END_THROUGHPUT, MODEL_ONLY_THROUGHPUT
from bench.platform.device import autocast, synchronize


def _cycle(loader):
    """The loader's batches, from the start again when it ends."""
    while True:
        yield from loader


def end_to_end_speed(
    model: nn.Module,
    samples: SampleSet,
    labels: Sequence[int],
    *,
    resolution: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    device: torch.device,
    precision: str,
    memory_format: torch.memory_format = torch.contiguous_format,
    workers: int = 0,
    min_time_s: float = 1.0,
    min_batches: int = 3,
    max_time_s: float = 60.0,
    clock=time.perf_counter,
) -> dict[str, Any]:
    """The end-to-end figures of the module docstring, and how they were taken (`data_path`)."""
    dataset = StreamedImages(samples, resolution, labels, mean=mean, std=std)
    if len(dataset) == 0:
        raise ValueError("no test images to time the data path on")
    loader = streamed_loader(dataset, batch_size=batch_size, workers=workers)
    waits: list[float] = []
    model_times: list[float] = []
    batches = _cycle(loader)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, precision):
            x, _ = next(batches)  # the loader's start-up and the first call: not timed
            model(x.to(device).contiguous(memory_format=memory_format))
            synchronize(device)
            began = clock()
            while True:
                t0 = clock()
                x, _ = next(batches)
                t1 = clock()
                model(x.to(device, non_blocking=True).contiguous(memory_format=memory_format))
                synchronize(device)
                t2 = clock()
                waits.append(t1 - t0)
                model_times.append(t2 - t1)
                elapsed = clock() - began
                if (elapsed >= min_time_s and len(waits) >= min_batches) or elapsed >= max_time_s:
                    break
    finally:
        model.train(was_training)
    batch = int(x.shape[0])
    images = batch * len(waits)
    wait, alone = float(np.sum(waits)), float(np.sum(model_times))
    e2e = wait + alone
    return {
        END_TO_END_THROUGHPUT.key: images / e2e,
        MODEL_ONLY_THROUGHPUT.key: images / alone,
        END_TO_END_RATIO.key: alone / e2e,
        DATA_PATH_SHARE.key: wait / e2e,
        "data_path": {
            "images_from": dataset.source,
            "test_images": len(dataset),
            "batch_size": batch,
            "batches_timed": len(waits),
            "resolution": resolution,
            "loader_workers": workers,
            "median_data_ms": Stats.of(waits).median * 1e3,
            "median_model_ms": Stats.of(model_times).median * 1e3,
            "total_data_s": wait,
            "total_model_s": alone,
            "steps": "decode (PIL) -> RGB -> resize (shorter side, centre crop) -> normalise -> batch -> model",
        },
    }
