"""`synthetic-artists`: a deterministic stand-in for the founding dataset, in the founding format.

It writes a CSV `id,img_path,artist` and JPEG images, with 50 "artists" on the founding long tail
(about 620 images for the most painted down to about 25 for the least, 5,911 in all; `scale` shrinks
it). Each artist has a learnable style: a palette (shared in part with other artists, so colour alone
does not tell them apart), a stroke direction, a stroke texture (length, width, density) and a
composition (where the main shape sits). Every image jitters those, so a model must learn the style,
not memorise pixels. The data is synthetic: every run on it says so.
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GENERATOR_VERSION = 1


def class_counts(n_classes: int = 50, total: int = 5911, largest: int = 620, smallest: int = 25) -> list[int]:
    """A long tail from `largest` down to `smallest` summing exactly to `total` (power-law-like decay)."""
    if not smallest * n_classes <= total <= largest * n_classes:
        raise ValueError("total must lie between smallest*n_classes and largest*n_classes")
    x = np.linspace(0.0, 1.0, n_classes)

    def counts(p: float) -> np.ndarray:
        return smallest + (largest - smallest) * (1.0 - x) ** p

    lo, hi = 0.01, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if counts(mid).sum() > total:
            lo = mid
        else:
            hi = mid
    out = np.floor(counts((lo + hi) / 2)).astype(int)
    out[0], out[-1] = largest, smallest
    i = 1
    while out.sum() != total:  # fix rounding on the head classes, keeping the order non-increasing
        step = 1 if out.sum() < total else -1
        if smallest < out[i] + step < out[i - 1] or (step > 0 and out[i] + step <= out[i - 1]):
            out[i] += step
        i = i + 1 if i < n_classes - 2 else 1
    return [int(c) for c in out]


def _styles(n_classes: int, rng: np.random.Generator) -> list[dict]:
    hue_families = np.linspace(0, 1, 10, endpoint=False)
    angles = np.linspace(0, np.pi, 6, endpoint=False)
    spots = [(x, y) for x in (0.25, 0.5, 0.75) for y in (0.3, 0.7)]
    styles = []
    for c in range(n_classes):
        styles.append(
            {
                "hue": float(hue_families[c % 10] + rng.uniform(-0.02, 0.02)),
                "hue_spread": float(rng.uniform(0.05, 0.25)),
                "angle": float(angles[(c // 10 + c) % 6]),
                "stroke_len": float(rng.uniform(0.1, 0.45)),
                "stroke_width": int(rng.integers(1, 5)),
                "strokes": int(rng.integers(8, 40)),
                "spot": spots[(c * 7) % 6],
                "spot_size": float(rng.uniform(0.12, 0.3)),
                "dark": bool(c % 3 == 0),
            }
        )
    return styles


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def render(style: dict, size: int, rng: np.random.Generator) -> Image.Image:
    """One painting in `style`, jittered by `rng`."""
    hue = style["hue"] + rng.normal(0, 0.03)
    base_v = 0.35 if style["dark"] else 0.8
    top = np.array(_rgb(hue, 0.5, base_v + rng.normal(0, 0.05)), dtype=np.float32)
    bottom = np.array(_rgb(hue + style["hue_spread"], 0.6, base_v - 0.2 + rng.normal(0, 0.05)), dtype=np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    canvas = (top * (1 - t) + bottom * t).repeat(size, axis=1)
    canvas += rng.normal(0, 6, canvas.shape).astype(np.float32)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    sx, sy = style["spot"]
    cx, cy = (sx + rng.normal(0, 0.05)) * size, (sy + rng.normal(0, 0.05)) * size
    r = style["spot_size"] * size * rng.uniform(0.8, 1.2)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_rgb(hue + 0.5, 0.7, 0.9 - 0.4 * style["dark"]))
    n = max(3, int(style["strokes"] * rng.uniform(0.7, 1.3)))
    for _ in range(n):
        angle = style["angle"] + rng.normal(0, 0.15)
        length = style["stroke_len"] * size * rng.uniform(0.6, 1.4)
        x0, y0 = rng.uniform(0, size), rng.uniform(0, size)
        x1, y1 = x0 + np.cos(angle) * length, y0 + np.sin(angle) * length
        colour = _rgb(hue + rng.choice([0.0, style["hue_spread"], -style["hue_spread"]]), 0.8, rng.uniform(0.3, 1.0))
        draw.line([(x0, y0), (x1, y1)], fill=colour, width=style["stroke_width"])
    return img


def generate(
    out_dir: Path,
    *,
    n_classes: int = 50,
    total: int = 5911,
    largest: int = 620,
    smallest: int = 25,
    scale: float = 1.0,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the dataset under `out_dir` (atomically: a temp folder renamed); return the CSV path.

    `scale` multiplies every class count (at least 2 per class, so each has a train and a val image).
    """
    counts = class_counts(n_classes, total, largest, smallest)
    counts = [max(2, int(round(c * scale))) for c in counts]
    rng = np.random.default_rng(seed)
    styles = _styles(n_classes, rng)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        rows = []
        next_id = 0
        for c, count in enumerate(counts):
            artist = f"synthetic_artist_{c:02d}"
            (tmp / "images" / artist).mkdir(parents=True)
            for _ in range(count):
                rel = f"images/{artist}/{next_id:05d}.jpg"
                render(styles[c], image_size, rng).save(tmp / rel, quality=90)
                rows.append((next_id, rel, artist))
                next_id += 1
        order = np.random.default_rng(seed + 1).permutation(len(rows))
        with open(tmp / "artists.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "img_path", "artist"])
            writer.writerows(rows[i] for i in order)
        (tmp / "SYNTHETIC.json").write_text(
            json.dumps(
                {"generator": "bench synthetic-artists", "version": GENERATOR_VERSION, "counts": counts, "seed": seed}
            )
        )
        try:
            os.replace(tmp, out_dir)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "artists.csv"


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "bench"))


def ensure_generated(**params) -> Path:
    """The CSV of the synthetic dataset with these parameters, generating it once into the cache."""
    key = hashlib.sha256(json.dumps({"v": GENERATOR_VERSION, **params}, sort_keys=True).encode()).hexdigest()[:12]
    out = cache_dir() / "datasets" / f"synthetic-artists-{key}"
    csv_path = out / "artists.csv"
    if not csv_path.is_file():
        generate(out, **params)
    return csv_path
