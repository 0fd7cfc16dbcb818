"""The data, checked once per run and data source before any cell runs; and a data source's identity.

A run's training cells name their data (`settings.train.data`: a kind and its options). Each distinct
source is read once, the way a cell would read it (`bench.data.load_samples`: the CSV's columns, the
image folder), and checked for what would otherwise fail every cell that uses it, one after the other,
after their `profile` and `speed`: at least two classes, the suite's `num_classes` equal to the data's
class count, every listed image file present (unless `on_bad_image: skip`), every class able to fill the
training, validation and test splits the cells ask for (the same split functions the cells call), and
a training set at least one batch large. Every problem found becomes one line of one `InputError`
(exit 2); nothing has run. Decoding the images stays the cells' job: a corrupt image still fails only its
own cells, with its file named.

`class_names` is the cheap count behind the `num_classes` default (bench.suite.expand): the CSV's label
column or the folders, the synthetic and standard sources' fixed classes, without generating or decoding.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import InputError
from bench.data import load_samples, stratified_split
from bench.data.base import SampleSet, three_way_split
from bench.data.sources import _resolve, read_label_csv
from bench.data.standins import SHAPES
from bench.measure.train.settings import DataSettings, TrainSettings

SYNTHETIC_ARTISTS_CLASSES = [f"synthetic_artist_{c:02d}" for c in range(50)]  # bench.data.synthetic's 50


def source_key(kind: str, options: dict[str, Any], base_dir: Path) -> str:
    """What identifies a data source in a run: its kind, its options and the folder paths are relative to."""
    return json.dumps([kind, options, str(Path(base_dir).resolve())], sort_keys=True, default=str)


def class_names(kind: str, options: dict[str, Any], base_dir: Path) -> list[str]:
    """The sorted class names of a source, as cheaply as it allows: a CSV's label column, an image folder's
    folders, the fixed classes of the synthetic and standard sources; any other kind is loaded whole."""
    if kind in ("csv", "synthetic-artists") and options.get("csv") is None:
        if kind == "synthetic-artists" or options.get("synthetic_fallback") is not None:
            return list(SYNTHETIC_ARTISTS_CLASSES)
    if kind == "csv" and options.get("csv") is not None:
        csv_path = _resolve(base_dir, options["csv"])
        root = _resolve(base_dir, options["root"]) if options.get("root") else csv_path.parent
        samples = read_label_csv(
            csv_path,
            root,
            path_column=options.get("path_column", "img_path"),
            label_column=options.get("label_column", "artist"),
            id_column=options.get("id_column", "id"),
        )
        return samples.classes
    if kind == "digits":
        return [f"digit_{d}" for d in range(10)]
    if kind.startswith("synthetic-") and kind.removeprefix("synthetic-") in SHAPES:
        return sorted(SHAPES[kind.removeprefix("synthetic-")].classes)
    return load_samples(kind, options, base_dir).classes


@dataclass
class CheckedSource:
    """One data source of a run, as checked: what it is and what identifies its content."""

    key: str
    kind: str
    description: str
    classes: list[str]
    identity: dict[str, Any]  # description, sample count, file count and bytes, a digest of keys/labels/sizes/mtimes


def identity(samples: SampleSet) -> dict[str, Any]:
    """The file list with sizes and modification times (or the generator's id, or the arrays' bytes) as a
    digest, with counts a person can read when two identities differ."""
    files = [p for p in samples.paths if p is not None]
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except OSError:
            pass
    return {
        "description": samples.description,
        "samples": len(samples),
        "classes": len(samples.classes),
        "files": len(files),
        "bytes": size,
        "digest": samples.fingerprint(),
    }


def check_data(cells: list, base_dir: Path, *, suite_file: str | Path | None = None) -> list[CheckedSource]:
    """Check every data source the training cells of a run use (see the module's docstring); return each
    source's identity. Raises one InputError with a line per problem found."""
    groups: dict[str, list[tuple[Any, TrainSettings]]] = {}
    for cell in cells:
        if "train" not in cell.measure:
            continue
        settings = TrainSettings.model_validate(cell.settings.get("train") or {})
        key = source_key(settings.data.kind, settings.data.options, base_dir)
        groups.setdefault(key, []).append((cell, settings))
    checked: list[CheckedSource] = []
    errors: list[InputError] = []
    for key, members in groups.items():
        data = members[0][1].data
        try:
            samples = load_samples(data.kind, data.options, base_dir)
            errors.extend(_problems(samples, members, suite_file))
        except InputError as exc:
            errors.append(exc)
            continue
        checked.append(CheckedSource(key, data.kind, samples.description, samples.classes, identity(samples)))
    if errors:
        raise InputError.many(errors)
    return checked


def _problems(samples: SampleSet, members: list[tuple[Any, TrainSettings]], suite_file) -> list[InputError]:
    classes = samples.classes
    where = samples.description
    if len(classes) < 2:
        return [
            InputError(
                f"the label column has a single class ('{classes[0]}') in {where}",
                field="data",
                hint="classification needs at least two classes",
            )
        ]
    problems: list[InputError] = []
    wrong = sorted({cell.num_classes for cell, _ in members if cell.num_classes != len(classes)})
    if wrong:
        problems.append(
            InputError(
                f"the data has {len(classes)} classes ({where}) but the suite's num_classes is "
                f"{', '.join(map(str, wrong))}",
                file=suite_file,
                field="num_classes",
                hint=f"set num_classes: {len(classes)}, or leave num_classes out: a suite that trains then takes "
                "the data's class count",
            )
        )
    strict = any(s.data.on_bad_image == "error" for _, s in members)
    missing = [p for p in samples.paths if p is not None and not os.path.isfile(p)] if strict else []
    if missing:
        more = f" (and {len(missing) - 1} more of {len(samples)})" if len(missing) > 1 else ""
        problems.append(
            InputError(
                f"listed image file not found: {missing[0]}{more} in {where}",
                field="data",
                hint="fix the paths or remove those rows, or set data.on_bad_image: skip to train without them",
            )
        )
    labels = samples.label_indices(classes)
    given_split = next((n for n in samples.notes if n.startswith("split:")), None)
    seen: set[tuple] = set()
    for cell, s in members:
        split = (s.data.subset, s.data.val_fraction, s.data.test_fraction, s.data.split_seed)
        if split in seen:
            continue
        seen.add(split)
        try:
            n_train = _n_train(labels, s.data, given_split, classes)
        except InputError as exc:
            problems.append(exc)
            break
        batch = max(c.batch_size for c, t in members if t.data == s.data)
        if batch > n_train:
            problems.append(
                InputError(
                    f"batch size {batch} is larger than the training set ({n_train} images) of {where}",
                    field="batch_size",
                    hint="use a smaller batch size or more data",
                )
            )
    return problems


def _n_train(labels: np.ndarray, data: DataSettings, given_split: str | None, classes: list[str]) -> int:
    """The training-set size a cell would get: the same subset and split calls as its `prepare_data`."""
    if data.subset is not None and data.subset < 1:
        keep, _ = stratified_split(labels, 1 - data.subset, data.split_seed)
        labels = labels[keep]
    if given_split is not None and data.subset is None:
        n_given = int(given_split.split(":")[1])
        fit, _ = stratified_split(labels[:n_given], data.val_fraction, data.split_seed)
        return len(fit)
    train, _, _ = three_way_split(labels, data.val_fraction, data.test_fraction, data.split_seed, classes)
    return len(train)
