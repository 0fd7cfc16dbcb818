"""The cached data path against what training consumes, measured in one run.

Loader: one epoch of the training DataLoader (decoded-image cache, weighted sampler, flip + crop
augmentation, normalisation), images per second. Training: mobilenet_v2 train steps (forward, backward,
fused Adam) on the same batches, images per second. Target: loader >= 3x training. The margin is
large (two orders of magnitude here), so the 3x is asserted.
"""

import time

import torch

from bench.data import CachedImages, decode_all, load_samples, make_loader
from bench.measure.train.strategies import make_sampler
from bench.models.builders import build_model

RES, BATCH = 32, 32


def _loader_img_s(loader) -> float:
    t0, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - t0)


def _train_img_s(loader, steps=12) -> float:
    model = build_model("mobilenet_v2", num_classes=50).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    batches = [b for _, b in zip(range(steps + 2), loader)]
    for x, y in batches[:2]:  # warm-up
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    t0, n = time.perf_counter(), 0
    for x, y in batches[2:]:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        n += len(x)
    return n / (time.perf_counter() - t0)


def test_cached_loader_outpaces_training(benchmark, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    samples = load_samples("synthetic-artists", {"scale": 0.2, "image_size": 48}, tmp_path)
    decoded = decode_all(samples, RES)
    labels = torch.from_numpy(samples.label_indices()[decoded.kept])
    ds = CachedImages(decoded.images, labels, hflip=True, crop_pad=4)
    sampler = make_sampler("weighted", labels.numpy(), torch.Generator().manual_seed(0))
    loader = make_loader(ds, batch_size=BATCH, sampler=sampler, seed=0)

    loader_img_s = benchmark.pedantic(_loader_img_s, args=(loader,), rounds=3, iterations=1)
    loader_img_s = max(_loader_img_s(loader) for _ in range(2))
    train_img_s = _train_img_s(loader)
    ratio = loader_img_s / train_img_s
    benchmark.extra_info.update({"loader_img_s": loader_img_s, "train_img_s": train_img_s, "ratio": ratio})
    print(
        f"\nloader {loader_img_s:,.0f} img/s vs mobilenet_v2 training {train_img_s:,.0f} img/s "
        f"at {RES}px, batch {BATCH}: {ratio:.1f}x"
    )
    assert ratio >= 3
