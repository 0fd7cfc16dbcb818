"""Images read the way a deployed model reads them: each decoded from its file when asked for, nothing cached.

Training reads the decoded-image cache (bench.data.images): every image is decoded once, so epochs time the
model, not the JPEG decoder. A model in service has no such cache: each request's image is decoded,
converted to RGB, resized and normalised before the model sees it. `StreamedImages` is that path for a
`SampleSet` (a file per sample, or an in-memory array for data that ships as arrays), with the same decoder,
resize and normalisation as training, so the difference between the two is the data path alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.data.base import SampleSet
from bench.data.images import decode_array, decode_file


class StreamedImages(Dataset):
    """Sample i -> (normalised float32 3 x R x R, label index), decoded, resized and normalised on every access."""

    def __init__(
        self,
        samples: SampleSet,
        resolution: int,
        labels: Sequence[int],
        *,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.samples, self.resolution, self.labels = samples, resolution, list(labels)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1) * 255.0
        self.scale = 1.0 / (np.asarray(std, dtype=np.float32).reshape(-1, 1, 1) * 255.0)

    @property
    def source(self) -> str:
        """'files' when every sample is a file, 'arrays' when in memory, 'files and arrays' otherwise."""
        kinds = {"files" if p is not None else "arrays" for p in self.samples.paths}
        return " and ".join(sorted(kinds))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path = self.samples.paths[index]
        if path is None:
            array = self.samples.arrays[index] if self.samples.arrays is not None else None
            assert array is not None, f"sample {self.samples.keys[index]} has neither a path nor an array"
            rgb = decode_array(array, self.resolution)
        else:
            rgb, _ = decode_file(path, self.resolution)
        # per image, in numpy (one thread, as a loader worker would): CHW float32, normalised as training does
        chw = (rgb.transpose(2, 0, 1).astype(np.float32) - self.mean) * self.scale
        return chw, self.labels[index]


def _collate(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked by numpy (one thread, as a loader worker would): torch.stack's parallel copy of the same batch
    took 70 ms on a 2-core machine whose cores were both busy, numpy's a few."""
    return torch.from_numpy(np.stack([x for x, _ in batch])), torch.tensor([y for _, y in batch], dtype=torch.long)


def streamed_loader(
    dataset: StreamedImages,
    *,
    batch_size: int,
    workers: int = 0,
) -> DataLoader:
    """Batches in order, full batches only when there is at least one (a throughput is per full batch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=_collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=len(dataset) >= batch_size,
    )
