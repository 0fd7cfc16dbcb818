"""What each cell of a plan does, as counts for the cost model (bench.plan.cost): FLOPs by kind, operator
calls, parameters, training images, images to render or decode.

FLOPs and operator calls come from building the model on the `meta` device (no memory, no init) and
running one forward pass through bench's FLOP counter, so even wide_resnet50_2 or EfficientNet-B7 at 600
px cost well under a second; the counts are cached per (model, resolution, classes, kwargs, torch version)
in `results/.workload-cache.json`. Dataset sizes come from the dataset's definition (the synthetic
artists' class counts, a stand-in's shape, a CSV's rows), never by generating it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.core.cell import Cell, canonical_json
from bench.core.files import atomic_write_text
from bench.data import load_samples, stratified_split
from bench.data.images import _cache_key, _disk_path
from bench.data.synthetic import GENERATOR_VERSION, cache_dir, class_counts
from bench.execution.epochs import shared_training_groups
from bench.measure.catalogue import PARAMS
from bench.measure.flops import count_flops, count_params
from bench.models.builders import build_model, classifier_prefix
from bench.plan.cost import DataWork, ForwardWork, SpeedWork, TrainWork, Work, estimate
from bench.platform.device import cpu_precision_is_native

CACHE_VERSION = 1


class _OpCounter(TorchDispatchMode):
    """Counts operator calls and the FLOPs of grouped (e.g. depthwise) convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.grouped_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        if func._overloadpacket is torch.ops.aten.convolution and len(args) > 8 and int(args[8]) > 1:
            weight = args[1]
            # 2 x MACs: every output element takes (in_channels / groups) x kh x kw multiply-adds
            self.grouped_flops += 2 * out.numel() * weight.shape[1] * weight.shape[2:].numel()
        return out


def count_model(
    name: str, resolution: int, num_classes: int, model_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Forward FLOPs per image (dense, grouped, elementwise), operator calls, params and the head's params
    of a registry model, counted on the meta device."""
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, resolution=resolution, **(model_kwargs or {}))
    counts = count_module(model, (1, 3, resolution, resolution))
    head = classifier_prefix(model)
    counts["head_params"] = sum(
        p.numel() for n, p in model.named_parameters() if head is not None and n.startswith(head + ".")
    )
    return counts


def count_module(model: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Forward FLOPs of one input of `input_shape` (dense, grouped, elementwise), operator calls and params
    of any module, counted on the meta device (the module is moved there if it is not)."""
    if any(p.device.type != "meta" for p in model.parameters()):
        model = model.to("meta")
    x = torch.empty(*input_shape, device="meta")
    ops = _OpCounter()
    with ops:
        count = count_flops(model, x)
    params, _ = count_params(model)
    grouped = min(ops.grouped_flops, count.flops)
    return {
        "dense_flops": count.flops - grouped,
        "grouped_flops": grouped,
        "elementwise_flops": count.elementwise_flops,
        "ops": ops.ops,
        PARAMS.key: params,
    }


class WorkloadCache:
    """Counts per (model, resolution, classes, kwargs), on disk between plans."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text())
                if loaded.get("version") == CACHE_VERSION:
                    self.data = loaded.get("models", {})
            except (OSError, ValueError):
                self.data = {}

    def get(self, cell: Cell) -> dict[str, Any]:
        key = canonical_json([cell.model, cell.resolution, cell.num_classes, cell.model_kwargs, torch.__version__])
        if key not in self.data:
            self.data[key] = count_model(cell.model, cell.resolution, cell.num_classes, cell.model_kwargs)
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "models": self.data}))
        except OSError:
            pass  # a cache: not worth failing a plan over


def _synthetic_artists(options: dict[str, Any]) -> tuple[int, bool]:
    """(images, already generated?) of the synthetic artists stand-in, from its definition."""
    import hashlib

    params = {"scale": 1.0, "image_size": 64, "seed": 0, **options}
    counts = [max(2, int(round(c * params["scale"]))) for c in class_counts()]
    key = hashlib.sha256(json.dumps({"v": GENERATOR_VERSION, **params}, sort_keys=True).encode()).hexdigest()[:12]
    generated = (cache_dir() / "datasets" / f"synthetic-artists-{key}" / "artists.csv").is_file()
    return sum(counts), generated


def dataset_plan(data: dict[str, Any], resolution: int, base_dir: Path) -> dict[str, Any]:
    """Images in a cell's dataset after `subset`, the train/val split sizes, and what is left to do:
    images to render (a synthetic dataset not generated yet) and to decode (not in the decoded cache)."""
    kind, options = data.get("kind", "synthetic-artists"), dict(data.get("options") or {})
    subset = data.get("subset")
    val_fraction, test_fraction = float(data.get("val_fraction", 0.1)), float(data.get("test_fraction", 0.2))
    synthetic = None
    if kind == "synthetic-artists":
        synthetic = options
    elif kind == "csv" and options.get("csv") is None and options.get("synthetic_fallback") is not None:
        synthetic = options["synthetic_fallback"]
    render, decoded = 0, False
    if synthetic is not None:
        n, generated = _synthetic_artists(synthetic)
        if not generated:
            render = n
    if synthetic is None or not render:
        samples = load_samples(kind, options, base_dir)
        if subset is not None and subset < 1:
            keep, _ = stratified_split(
                samples.label_indices(samples.classes), 1 - subset, int(data.get("split_seed", 0))
            )
            samples = samples.subset(keep)
        n = len(samples)
        decoded = _disk_path(_cache_key(samples, resolution, data.get("on_bad_image", "error"))).is_file()
        split = next((int(x.split(":")[1]) for x in samples.notes if x.startswith("split:")), None)
        if split is not None and subset is None:
            n_val = round(split * val_fraction)  # validation comes out of the training files
            return {
                "n": n,
                "n_train": split - n_val,
                "n_val": n_val,
                "n_test": n - split,
                "render": render,
                "decode": 0 if decoded else n,
            }
    elif subset is not None and subset < 1:
        n = round(n * subset)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return {
        "n": n,
        "n_train": n - n_val - n_test,
        "n_val": n_val,
        "n_test": n_test,
        "render": render,
        "decode": 0 if decoded else n,
    }


def cell_works(cells: list[Cell], base_dir: Path, cache: WorkloadCache, *, cpu: bool = True) -> list[Work]:
    """The `Work` of each cell, in order. A dataset is rendered and decoded by the first cell that needs it
    (later cells find it cached); cells of an epoch sweep other than the longest are read off its run."""
    served = {c.id for group in shared_training_groups(cells) for c in group[:-1]}
    prepared: set[str] = set()
    datasets: dict[str, dict[str, Any]] = {}
    works = []
    for cell in cells:
        counts = cache.get(cell)
        fw = ForwardWork(counts["dense_flops"], counts["grouped_flops"], counts["elementwise_flops"], counts["ops"])
        speed = train = None
        data = DataWork()
        if "speed" in cell.measure:
            s = cell.settings.get("speed", {})
            speed = SpeedWork(**{k: s[k] for k in SpeedWork.__dataclass_fields__ if k in s})
        if "train" in cell.measure:
            s = cell.settings.get("train", {})
            skipped = cpu and not cpu_precision_is_native(cell.precision) and not s.get("cpu_emulated_precision", False)
            dkey = canonical_json([s.get("data"), cell.resolution])
            if dkey not in datasets:
                datasets[dkey] = dataset_plan(s.get("data") or {}, cell.resolution, base_dir)
            d = datasets[dkey]
            frozen = bool(s.get("freeze_backbone"))
            train = TrainWork(
                epochs=int(s.get("epochs", 10)),
                n_train=d["n_train"],
                n_val=d["n_val"],
                n_test=d["n_test"],
                eval_batch_size=int(s.get("eval_batch_size", 128)),
                trainable_fraction=(counts["head_params"] / counts[PARAMS.key])
                if frozen and counts[PARAMS.key]
                else 1.0,
                skipped=skipped,
                served=cell.id in served,
            )
            if not skipped and not train.served and dkey not in prepared:
                prepared.add(dkey)
                render_key = canonical_json(s.get("data"))
                data = DataWork(
                    render_images=d["render"] if render_key not in prepared else 0, decode_images=d["decode"]
                )
                prepared.add(render_key)
        train_flops = (cell.settings.get("profile") or {}).get("train_flops", "auto")
        works.append(
            Work(
                params=counts[PARAMS.key],
                forward=fw,
                batch_size=cell.batch_size,
                precision=cell.precision,
                profile="profile" in cell.measure,
                profile_train=("train" in cell.measure) if train_flops == "auto" else bool(train_flops),
                speed=speed,
                train=train,
                data=data,
            )
        )
    return works


def default_cache_path(results_root: Path = Path("results")) -> Path:
    return Path(os.environ.get("BENCH_WORKLOAD_CACHE", results_root / ".workload-cache.json"))


def estimate_cells(
    cells: list[Cell], base_dir: Path, cal, *, device_type: str = "cpu", cache_path: Path | None = None
) -> list[dict[str, float]]:
    """Each cell's estimated seconds by part (bench.plan.cost.estimate), in order."""
    cache = WorkloadCache(cache_path)
    try:
        works = cell_works(cells, base_dir, cache, cpu=device_type == "cpu")
    finally:
        cache.save()
    return [estimate(w, cal) for w in works]
