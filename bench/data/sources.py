"""The dataset kinds: `csv` (the founding format), `imagefolder`, `digits`, `synthetic-artists`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, overload

import numpy as np

from bench.core.errors import InputError
from bench.data.base import SampleSet, register_dataset
from bench.data.synthetic import ensure_generated

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@overload
def _resolve(base_dir: Path, value: str | Path) -> Path: ...
@overload
def _resolve(base_dir: Path, value: None) -> None: ...
def _resolve(base_dir: Path, value: str | Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def inside_root(root: Path, relative: str, *, file: Path, line: int) -> Path:
    """`root/relative`, refusing a path that escapes the root (`../`, an absolute path elsewhere)."""
    root_resolved = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise InputError(
            f"image path '{relative}' escapes the data root {root}",
            file=file,
            line=line,
            hint="paths in the CSV must stay inside the data root",
        )
    return candidate


def read_label_csv(
    csv_path: Path,
    root: Path,
    *,
    path_column: str = "img_path",
    label_column: str = "artist",
    id_column: str | None = "id",
) -> SampleSet:
    """Read a CSV of image paths (relative to `root`) and labels; every problem names file and line."""
    if not csv_path.is_file():
        raise InputError("CSV file not found", file=csv_path, hint="give the path of the dataset's CSV")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if not header:
            raise InputError(
                "the CSV is empty", file=csv_path, line=1, hint=f"expected a header with {path_column},{label_column}"
            )
        missing = [c for c in (path_column, label_column) if c not in header]
        if missing:
            raise InputError(
                f"CSV has no column {', '.join(repr(m) for m in missing)} (columns: {', '.join(header)})",
                file=csv_path,
                line=1,
                hint="set data.path_column / data.label_column to the right names",
            )
        keys: list[str] = []
        labels: list[str] = []
        paths: list[Path | None] = []
        for row in reader:
            line = reader.line_num
            rel, label = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
            if not rel or not label:
                raise InputError(f"empty {path_column if not rel else label_column}", file=csv_path, line=line)
            paths.append(inside_root(root, rel, file=csv_path, line=line))
            labels.append(label)
            keys.append(str(row.get(id_column) or rel) if id_column else rel)
    if not keys:
        raise InputError("the CSV has a header but no rows", file=csv_path, line=2, hint="add samples")
    return SampleSet(keys=keys, labels=labels, paths=paths, description=f"CSV {csv_path}")


@register_dataset("csv")
def csv_dataset(
    *,
    base_dir: Path,
    csv: str | None = None,
    root: str | None = None,
    val_csv: str | None = None,
    path_column: str = "img_path",
    label_column: str = "artist",
    id_column: str | None = "id",
    synthetic_fallback: dict[str, Any] | None = None,
) -> SampleSet:
    """The founding format. With no `csv` and a `synthetic_fallback`, the synthetic stand-in is used."""
    if csv is None:
        if synthetic_fallback is None:
            raise InputError("no CSV given", field="data.csv", hint="set data.csv to the dataset's CSV file")
        return synthetic_artists_dataset(base_dir=base_dir, **synthetic_fallback)
    csv_path = _resolve(base_dir, csv)
    root_path = _resolve(base_dir, root) if root else csv_path.parent
    if not root_path.is_dir():
        raise InputError(
            "data root not found",
            file=root_path,
            field="data.root",
            hint="give the folder the image paths are relative to",
        )
    samples = read_label_csv(
        csv_path, root_path, path_column=path_column, label_column=label_column, id_column=id_column
    )
    if val_csv:
        val_path = _resolve(base_dir, val_csv)
        val = read_label_csv(
            val_path, root_path, path_column=path_column, label_column=label_column, id_column=id_column
        )
        seen = set(samples.labels)
        for i, label in enumerate(val.labels):
            if label not in seen:
                raise InputError(
                    f"validation label '{label}' does not occur in training",
                    file=val_path,
                    line=i + 2,
                    hint="every validation class needs training images",
                )
        merged = SampleSet(
            keys=samples.keys + val.keys,
            labels=samples.labels + val.labels,
            paths=samples.paths + val.paths,
            description=f"CSV {csv_path} + validation CSV {val_path}",
        )
        merged.notes.append(f"split:{len(samples)}")
        return merged
    return samples


@register_dataset("imagefolder")
def imagefolder_dataset(*, base_dir: Path, root: str) -> SampleSet:
    """root/<class>/<image>: the class is the folder name."""
    root_path = _resolve(base_dir, root)
    if not root_path.is_dir():
        raise InputError(
            "data root not found", file=root_path, field="data.root", hint="an image folder: root/<class>/<image>"
        )
    keys: list[str] = []
    labels: list[str] = []
    paths: list[Path | None] = []
    for class_dir in sorted(p for p in root_path.iterdir() if p.is_dir()):
        for image in sorted(class_dir.rglob("*")):
            if image.suffix.lower() in IMAGE_EXTENSIONS and image.is_file():
                keys.append(str(image.relative_to(root_path)))
                labels.append(class_dir.name)
                paths.append(image)
    if not keys:
        raise InputError("no images found", file=root_path, hint="expected root/<class>/<image>.jpg")
    return SampleSet(keys=keys, labels=labels, paths=paths, description=f"image folder {root_path}")


def long_tail_counts(n_max: int, n_classes: int, ratio: float) -> list[int]:
    """Exponential profile: class c keeps n_max * ratio^(-c/(C-1)) samples (ratio = largest/smallest)."""
    if ratio < 1:
        raise InputError("imbalance ratio must be >= 1", field="data.imbalance")
    return [max(1, int(round(n_max * ratio ** (-c / max(1, n_classes - 1))))) for c in range(n_classes)]


@register_dataset("digits")
def digits_dataset(*, base_dir: Path, imbalance: float = 1.0, seed: int = 0) -> SampleSet:
    """scikit-learn's real handwritten digits (1,797 images, 8x8, 10 classes), with an optional long tail
    (`imbalance` = largest class / smallest, e.g. 20 for 20:1). Images are upscaled by the loader."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0 * 255).round().astype(np.uint8)
    target = digits.target
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    n_max = int(np.bincount(target).min())
    counts = long_tail_counts(n_max, 10, imbalance) if imbalance > 1 else [int((target == c).sum()) for c in range(10)]
    for c in range(10):
        idx = np.flatnonzero(target == c)
        keep.extend(sorted(rng.choice(idx, size=min(counts[c], len(idx)), replace=False).tolist()))
    keep.sort()
    return SampleSet(
        keys=[f"digit-{i}" for i in keep],
        labels=[f"digit_{target[i]}" for i in keep],
        paths=[None] * len(keep),
        arrays=[np.repeat(images[i][:, :, None], 3, axis=2) for i in keep],
        description=f"scikit-learn digits, imbalance {imbalance:g}:1",
    )


@register_dataset("synthetic-artists")
def synthetic_artists_dataset(*, base_dir: Path, scale: float = 1.0, image_size: int = 64, seed: int = 0) -> SampleSet:
    """The synthetic stand-in for the founding artists data (see bench.data.synthetic)."""
    csv_path = ensure_generated(scale=scale, image_size=image_size, seed=seed)
    samples = read_label_csv(csv_path, csv_path.parent)
    samples.synthetic = True
    samples.description = (
        f"SYNTHETIC stand-in for the artists data (bench synthetic-artists, scale {scale:g}, {len(samples)} images)"
    )
    return samples
