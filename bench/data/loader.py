"""Batches from the decoded-image cache: one indexed gather per batch, then normalise and augment.

The dataset implements `__getitems__`, so a DataLoader fetches a whole batch with one tensor index
instead of per-image Python calls; workers are configurable but rarely needed (the cache is in memory).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.data.base import IMAGENET_MEAN, IMAGENET_STD


class CachedImages(Dataset):
    """uint8 images N x 3 x R x R + int64 labels -> normalised float batches, optionally augmented."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        hflip: bool = False,
        crop_pad: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be uint8 N x C x H x W")
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.hflip, self.crop_pad = hflip, crop_pad

    def __len__(self) -> int:
        return len(self.labels)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.hflip:
            flip = torch.rand(x.shape[0]) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.crop_pad:
            p, (h, w) = self.crop_pad, x.shape[-2:]
            padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
            dx = torch.randint(0, 2 * p + 1, (x.shape[0],))
            dy = torch.randint(0, 2 * p + 1, (x.shape[0],))
            x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(x.shape[0])])
        return x

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = (self.images[idx].float() - self.mean) / self.std
        if self.hflip or self.crop_pad:
            x = self._augment(x)
        return x, self.labels[idx]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]


def _batch_as_is(batch):
    return batch


def make_loader(
    dataset: CachedImages,
    *,
    batch_size: int,
    sampler: Sampler | None = None,
    shuffle: bool = False,
    seed: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose shuffling and augmentation are driven by `seed` (its own generator).

    Training loaders drop the last partial batch (as timm's do): a trailing batch of one image cannot go
    through BatchNorm in training mode, and a tiny last batch gives one noisy, over-weighted step.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=shuffle if sampler is None else False,
        collate_fn=_batch_as_is,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        generator=generator,
        drop_last=drop_last,
    )
