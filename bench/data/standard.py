"""Standard datasets read from local files, never downloaded: `cifar10`, `stl10`, `cats-vs-dogs`.

- `cifar10`: torchvision's layout, `ROOT/cifar-10-batches-py/` (`data_batch_1`..`5`, `test_batch`,
  `batches.meta`), i.e. the extracted `cifar-10-python.tar.gz`. The batches are Python pickles: they are
  read with an unpickler that builds only plain containers and numpy arrays, so a file that would run
  code is refused, not run.
- `stl10`: torchvision's layout, `ROOT/stl10_binary/` (`train_X.bin`, `train_y.bin`, `test_X.bin`,
  `test_y.bin`, `class_names.txt`), the extracted `stl10_binary.tar.gz`: raw bytes, read with numpy.
- `cats-vs-dogs`: an image folder, `ROOT/<class>/<image>` (Kaggle's / Microsoft's `PetImages/Cat`,
  `PetImages/Dog`); its few corrupt JPEGs need `on_bad_image: skip`.

The given train/test split is kept (the test part is the validation set) unless `subset` is set. When the
files are absent the error says where to put them; with `fallback: synthetic` a stand-in of the same shape
(`bench.data.standins`) is used instead, labelled synthetic everywhere, its description saying why.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.core.errors import InputError
from bench.data.base import SampleSet, register_dataset
from bench.data.sources import _resolve, imagefolder_dataset
from bench.data.standins import standin

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_FILES = [*CIFAR_TRAIN, "test_batch", "batches.meta"]
STL_DIR = "stl10_binary"
STL_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
SOURCES_URL = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "stl10": "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "cats-vs-dogs": "https://www.microsoft.com/en-us/download/details.aspx?id=54765 (kagglecatsanddogs, PetImages/)",
}
Fallback = Literal["error", "synthetic"]


class _ArraysOnly(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused: {module}.{name} (only numpy arrays and plain data are read)")
        import importlib

        return getattr(
            importlib.import_module(
                module.replace("numpy.core.", "numpy._core.") if module.startswith("numpy.core.") else module
            ),
            name,
        )


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = _ArraysOnly(fh, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
    ) as exc:
        raise InputError(
            f"not a CIFAR-10 batch ({type(exc).__name__}: {str(exc)[:160]})",
            file=path,
            hint="replace it with the file from cifar-10-python.tar.gz",
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            "not a CIFAR-10 batch (no mapping inside)",
            file=path,
            hint="replace it with the file from cifar-10-python.tar.gz",
        )
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in data.items()}


def _missing(kind: str, root: Path, folder: str, files: list[str]) -> list[str]:
    return [f for f in files if not (root / folder / f).is_file()]


def _absent(
    kind: str, title: str, root: Path, expected: str, missing: list[str], fallback: str, synthetic: dict | None
) -> SampleSet:
    where = f"{title} not found under {root}: missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"
    if fallback == "synthetic":
        return standin(kind, why=f"{where}; to use the real data put {expected}", **(synthetic or {}))
    raise InputError(
        where,
        field="data.options.root",
        hint=f"put {expected} (from {SOURCES_URL[kind]}; bench never downloads), or set data.options.fallback: synthetic "
        "to use a synthetic stand-in of the same shape",
    )


def _check_fallback(fallback: str) -> None:
    if fallback not in ("error", "synthetic"):
        raise InputError(f"fallback must be 'error' or 'synthetic' (got {fallback!r})", field="data.options.fallback")


@register_dataset("cifar10")
def cifar10_dataset(
    *, base_dir: Path, root: str = "data", fallback: Fallback = "error", synthetic: dict[str, Any] | None = None
) -> SampleSet:
    """CIFAR-10 from `root/cifar-10-batches-py` (torchvision's layout): 50,000 train + 10,000 test, 32x32."""
    _check_fallback(fallback)
    root_path = _resolve(base_dir, root)
    missing = _missing("cifar10", root_path, CIFAR_DIR, CIFAR_FILES)
    expected = f"the extracted cifar-10-python.tar.gz there, as {root_path}/{CIFAR_DIR}/data_batch_1 … test_batch, batches.meta"
    if missing:
        return _absent("cifar10", "CIFAR-10", root_path, expected, missing, fallback, synthetic)
    meta = _read_pickle(root_path / CIFAR_DIR / "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    images: list[np.ndarray] = []
    labels: list[int] = []
    for name in [*CIFAR_TRAIN, "test_batch"]:
        path = root_path / CIFAR_DIR / name
        batch = _read_pickle(path)
        data, y = batch.get("data"), batch.get("labels")
        if (
            not isinstance(data, np.ndarray)
            or data.ndim != 2
            or data.shape[1] != 3072
            or y is None
            or len(y) != len(data)
        ):
            raise InputError(
                "not a CIFAR-10 batch (expected 'data' N x 3072 uint8 and N 'labels')",
                file=path,
                hint="replace it with the file from cifar-10-python.tar.gz",
            )
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8))
        labels.extend(int(v) for v in y)
    n_train = sum(len(a) for a in images[:-1])
    arrays = np.concatenate(images)
    if not names or max(labels) >= len(names):
        raise InputError("batches.meta has no label_names for every label", file=root_path / CIFAR_DIR / "batches.meta")
    return _given_split("cifar10", "CIFAR-10", root_path / CIFAR_DIR, [names[v] for v in labels], arrays, n_train)


def _given_split(
    prefix: str, title: str, folder: Path, labels: list[str], arrays: np.ndarray, n_train: int
) -> SampleSet:
    """In-memory images whose first `n_train` are the training part and the rest the test part (kept as the
    validation split: the `split:N` note)."""
    keys = [
        f"{prefix}-{'train' if i < n_train else 'test'}-{i if i < n_train else i - n_train:05d}"
        for i in range(len(labels))
    ]
    samples = SampleSet(
        keys=keys,
        labels=labels,
        paths=[None] * len(keys),
        arrays=list(arrays),
        description=f"{title} {folder} ({n_train} train + {len(keys) - n_train} test)",
    )
    samples.notes.append(f"split:{n_train}")
    return samples


@register_dataset("stl10")
def stl10_dataset(
    *, base_dir: Path, root: str = "data", fallback: Fallback = "error", synthetic: dict[str, Any] | None = None
) -> SampleSet:
    """STL-10's labelled part from `root/stl10_binary` (torchvision's layout): 5,000 train + 8,000 test, 96x96."""
    _check_fallback(fallback)
    root_path = _resolve(base_dir, root)
    folder = root_path / STL_DIR
    missing = _missing("stl10", root_path, STL_DIR, STL_FILES)
    expected = f"the extracted stl10_binary.tar.gz there, as {folder}/train_X.bin, train_y.bin, test_X.bin, test_y.bin"
    if missing:
        return _absent("stl10", "STL-10", root_path, expected, missing, fallback, synthetic)
    names_file = folder / "class_names.txt"
    names = (
        [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        if names_file.is_file()
        else ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    )
    images, labels = [], []
    for split in ("train", "test"):
        x = np.fromfile(folder / f"{split}_X.bin", dtype=np.uint8)
        y = np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1  # labels are 1..10
        if x.size != len(y) * 3 * 96 * 96 or (len(y) and (y.min() < 0 or y.max() >= len(names))):
            raise InputError(
                f"{split}_X.bin / {split}_y.bin do not match (expected 96x96x3 bytes per label, labels 1..{len(names)})",
                file=folder / f"{split}_X.bin",
                hint="replace them with the files from stl10_binary.tar.gz",
            )
        images.append(x.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))  # stored column-major
        labels.append(y)
    n_train = len(labels[0])
    y_all = np.concatenate(labels)
    arrays = np.concatenate(images)
    return _given_split("stl10", "STL-10", folder, [names[v] for v in y_all], arrays, n_train)


@register_dataset("cats-vs-dogs")
def cats_vs_dogs_dataset(
    *,
    base_dir: Path,
    root: str = "data/PetImages",
    fallback: Fallback = "error",
    synthetic: dict[str, Any] | None = None,
) -> SampleSet:
    """Cats vs dogs as an image folder: `root/<class>/<image>` (e.g. PetImages/Cat, PetImages/Dog)."""
    _check_fallback(fallback)
    root_path = _resolve(base_dir, root)
    classes = sorted(p.name for p in root_path.iterdir() if p.is_dir()) if root_path.is_dir() else []
    if len(classes) < 2:
        expected = f"one folder per class under {root_path} (e.g. {root_path}/Cat/1.jpg, {root_path}/Dog/1.jpg)"
        return _absent(
            "cats-vs-dogs",
            "cats vs dogs",
            root_path,
            expected,
            ["Cat/", "Dog/"] if not classes else [f"a second class folder beside {classes[0]}/"],
            fallback,
            synthetic,
        )
    samples = imagefolder_dataset(base_dir=base_dir, root=str(root_path))
    samples.description = f"cats vs dogs, image folder {root_path} ({', '.join(classes)})"
    return samples


def _standin_kind(kind: str):
    def factory(*, base_dir: Path, scale: float = 1.0, seed: int = 0, image_size: int | None = None) -> SampleSet:
        return standin(kind, scale=scale, seed=seed, image_size=image_size)

    factory.__doc__ = (
        f"The synthetic stand-in for {kind}, asked for by name (same classes, resolution, balance, split)."
    )
    return factory


for _kind in ("cifar10", "stl10", "cats-vs-dogs"):
    register_dataset(f"synthetic-{_kind}")(_standin_kind(_kind))
