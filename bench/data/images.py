"""Decoding and resizing, once per image and resolution: the decoded-image cache.

`decode_all(samples, resolution)` returns a uint8 tensor N x 3 x R x R. Each image is decoded (PIL),
converted to RGB, resized (shorter side to R, centre crop) once; the result is kept in memory for the
process and on disk (an .npy file in the cache folder) for later processes, so later epochs and later
cells never decode a JPEG again.

Colour modes: grayscale (L, I, F), palette (P), RGBA/LA (alpha composited on white) and CMYK are
converted to RGB — a documented conversion, counted in the notes. A missing, truncated or non-image
file is an error naming the file, or with `on_bad_image="skip"` is skipped and counted.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from bench.core.errors import InputError
from bench.data.base import SampleSet
from bench.data.synthetic import cache_dir

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated JPEG is an error, never a half-grey image
CACHE_VERSION = 1
_MEMORY: dict[str, Decoded] = {}


@dataclass
class Decoded:
    images: torch.Tensor  # uint8 N x 3 x R x R
    kept: np.ndarray  # indices into the SampleSet
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of skipped images
    converted: dict[str, int] = field(default_factory=dict)  # colour mode -> count converted to RGB


class BadImage(Exception):
    pass


def to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """RGB version of `img` and the mode it was converted from (None when already RGB)."""
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), mode
    return img.convert("RGB"), mode


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (bilinear, antialiased), then centre crop to size x size."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def decode_file(path: Path, size: int) -> tuple[np.ndarray, str | None]:
    try:
        with Image.open(path) as img:
            img.load()
            rgb, converted = to_rgb(img)
            return np.asarray(resize_square(rgb, size), dtype=np.uint8), converted
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:  # a header claiming > ~179 Mpx: refused before decoding (PIL's guard)
        raise BadImage(f"image too large to decode safely ({exc}); shrink it or remove it") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        raise BadImage(f"corrupt or truncated image ({exc})") from None


def decode_array(array: np.ndarray, size: int) -> np.ndarray:
    """An in-memory HxWx3 uint8 image resized as a file would be (`resize_square`)."""
    img = Image.fromarray(array)
    return np.asarray(resize_square(img, size), dtype=np.uint8)


def _cache_key(samples: SampleSet, size: int, on_bad_image: str) -> str:
    raw = f"{CACHE_VERSION}:{samples.fingerprint()}:{size}:{on_bad_image}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _disk_path(key: str) -> Path:
    return cache_dir() / "decoded" / f"{key}.npz"


def decode_all(
    samples: SampleSet, size: int, *, on_bad_image: str = "error", workers: int | None = None, disk_cache: bool = True
) -> Decoded:
    """Decode every sample at `size` (cached in memory and on disk)."""
    if on_bad_image not in ("error", "skip"):
        raise InputError(f"on_bad_image must be 'error' or 'skip', got '{on_bad_image}'", field="data.on_bad_image")
    key = _cache_key(samples, size, on_bad_image)
    if key in _MEMORY:
        return _MEMORY[key]
    disk = _disk_path(key)
    if disk_cache and disk.is_file():
        try:
            with np.load(disk, allow_pickle=False) as z:
                decoded = Decoded(
                    torch.from_numpy(z["images"].copy()),
                    z["kept"].copy(),
                    [tuple(b) for b in z["bad"].tolist()],
                    dict(zip(z["conv_modes"].tolist(), z["conv_counts"].tolist())),
                )
            _MEMORY[key] = decoded
            return decoded
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: decode again

    def work(i: int) -> tuple[np.ndarray | None, str | None, str | None]:
        path = samples.paths[i]
        try:
            if path is None:  # then the image is in memory (SampleSet's invariant)
                array = samples.arrays[i] if samples.arrays is not None else None
                assert array is not None, f"sample {samples.keys[i]} has neither a path nor an array"
                return decode_array(array, size), None, None
            arr, converted = decode_file(path, size)
            return arr, converted, None
        except BadImage as exc:
            return None, None, str(exc)

    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        results = list(pool.map(work, range(len(samples))))
    out = np.empty((len(samples), 3, size, size), dtype=np.uint8)
    kept: list[int] = []
    bad: list[tuple[str, str]] = []
    converted: dict[str, int] = {}
    for i, (arr, conv, err) in enumerate(results):
        if err is not None:
            where = str(samples.paths[i]) if samples.paths[i] is not None else samples.keys[i]
            if on_bad_image == "error":
                raise InputError(
                    f"bad image: {err}", file=where, hint="fix or remove it, or set data.on_bad_image: skip"
                )
            bad.append((where, err))
            continue
        if conv:
            converted[conv] = converted.get(conv, 0) + 1
        assert arr is not None  # set whenever err is None
        out[len(kept)] = arr.transpose(2, 0, 1)
        kept.append(i)
    decoded = Decoded(torch.from_numpy(out[: len(kept)].copy()), np.array(kept, dtype=np.int64), bad, converted)
    _MEMORY[key] = decoded
    if disk_cache:
        _save(disk, decoded)
    return decoded


def _save(path: Path, decoded: Decoded) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(
            tmp,
            images=decoded.images.numpy(),
            kept=decoded.kept,
            bad=np.array(decoded.bad, dtype=str).reshape(-1, 2),
            conv_modes=np.array(list(decoded.converted), dtype=str),
            conv_counts=np.array(list(decoded.converted.values()), dtype=np.int64),
        )
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written is not an error


def clear_memory_cache() -> None:
    _MEMORY.clear()
