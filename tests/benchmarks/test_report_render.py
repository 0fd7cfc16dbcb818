"""Rendering a report for 1,000 cells (target: <= 10 s on 2 CPU cores).

The run is written to a real results store: 1,000 cells over the registry's models, five strategies,
three precisions and seeds, each with profile, speed and train measurements (per-epoch curves,
per-class metrics and a confusion matrix of 50 classes), so that every section has work to do. The
figure is printed and kept in the benchmark's extra_info; it is not a pass/fail assert (shared
machine), per the project's rule for timing targets.
"""

import itertools
import time

import numpy as np
from cell_factory import make_cell

from bench.core.result import CellResult
from bench.models import get_entry, list_models
from bench.report import render_report
from bench.store.run_store import RunStore

N_CELLS, N_CLASSES = 1000, 50


def _write_run(run_dir):
    rng = np.random.default_rng(0)
    store = RunStore.create(run_dir)
    models = list_models()
    combos = itertools.product(
        models, ("none", "weighted_sampler", "weighted_loss", "both", "focal"), ("fp32", "bf16", "fp16"), range(10)
    )
    results = []
    counts = np.unique(np.geomspace(620, 25, N_CLASSES).astype(int), return_counts=False).tolist()
    counts = (counts + counts)[:N_CLASSES]
    for model, strategy, precision, seed in itertools.islice(combos, N_CELLS):
        entry = get_entry(model)
        cell = make_cell(
            model=model,
            family=entry.family,
            resolution=64,
            batch_size=32,
            precision=precision,
            seed=seed,
            num_classes=N_CLASSES,
            strategy=strategy,
        )
        f1 = float(rng.uniform(0.2, 0.8))
        cm = rng.integers(0, 5, size=(N_CLASSES, N_CLASSES)).tolist()
        per_class = {
            "class": [f"artist_{i:02d}" for i in range(N_CLASSES)],
            "precision": rng.random(N_CLASSES).tolist(),
            "recall": rng.random(N_CLASSES).tolist(),
            "f1": rng.random(N_CLASSES).tolist(),
            "support": counts,
        }
        curves = [
            {
                "epoch": e,
                "train_loss": 3 / e,
                "val_loss": 3.2 / e,
                "val_accuracy": f1 * e / 10,
                "val_macro_f1": f1 * e / 10,
            }
            for e in range(1, 11)
        ]
        results.append(
            CellResult(
                cell=cell,
                status="ok",
                measurements={
                    "profile": {
                        "status": "ok",
                        "params": float(rng.uniform(2e6, 1e8)),
                        "gmacs": float(rng.uniform(0.02, 20)),
                        "macs": 1e9,
                        "flops_batch_size": 1,
                    },
                    "speed": {
                        "status": "ok",
                        "throughput_img_s": float(rng.uniform(5, 500)),
                        "latency_median_ms": float(rng.uniform(5, 500)),
                    },
                    "train": {
                        "status": "ok",
                        "macro_f1": f1,
                        "accuracy": f1 + 0.1,
                        "train_img_s": float(rng.uniform(10, 200)),
                        "train_time_s": 60.0,
                        "best_epoch": 10,
                        "curves": curves,
                        "per_class": per_class,
                        "train_class_counts": counts,
                        "confusion_matrix": cm,
                        "dataset": "synthetic-artists",
                        "synthetic_data": True,
                    },
                },
            )
        )
    for r in results:
        store.write_cell(r)
    store.write_plan([r.cell for r in results])
    return store.run_dir


def test_render_1000_cells(benchmark, tmp_path):
    run_dir = _write_run(tmp_path / "run")
    times = []

    def render():
        t0 = time.perf_counter()
        paths = render_report([run_dir], tmp_path / "out")
        times.append(time.perf_counter() - t0)
        return paths

    paths = benchmark.pedantic(render, rounds=3, iterations=1, warmup_rounds=0)
    html = paths["html"].read_text()
    assert html.count("<tr>") >= 1000 // 10  # the leaderboard has a row per configuration (seeds aggregated)
    median = sorted(times)[len(times) // 2]
    benchmark.extra_info["median_s"] = median
    print(f"\nreport for {N_CELLS} cells: median {median:.2f} s over {len(times)} renders (target <= 10 s)")
