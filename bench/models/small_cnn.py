"""`small_cnn`: a small configurable CNN, so that architecture hyperparameters are axes too.

The classic Keras CIFAR-10 network, generalised: `blocks` conv blocks, each of `convs_per_block`
convolutions (`kernel_size`, same padding, ReLU, optional BatchNorm) with `filters` channels in the
first block, multiplied by `filter_growth` per block, then a max-pool of `pool_size` and a dropout of
`conv_dropout`; then flatten, a dense layer of `dense` units (ReLU), a dropout of `dropout`, and the
classifier. With its defaults it is that Keras example (32-32-pool-64-64-pool-512, dropouts 0.25/0.5).

Every keyword is validated (pydantic), so `model.pool_size: [2, 3]` in a suite gets a clear error for a
bad value or a misspelled name; the flattened size is computed from the input resolution, and a
resolution too small for the pooling is refused with the smallest one that works.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bench.core.errors import InputError


class SmallCNNConfig(BaseModel):
    """The small CNN's keyword arguments (all optional)."""

    model_config = ConfigDict(extra="forbid")

    blocks: int = Field(2, ge=1, le=6, description="conv blocks, each ending in a max-pool")
    convs_per_block: int = Field(2, ge=1, le=4)
    filters: int = Field(32, ge=1, le=1024, description="channels of the first block")
    filter_growth: float = Field(2.0, ge=1.0, le=4.0, description="channel multiplier per block")
    kernel_size: int = Field(3, ge=1, le=11)
    pool_size: int = Field(2, ge=1, le=8)
    conv_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout after each block")
    dense: int = Field(512, ge=1, le=8192, description="units of the dense layer before the classifier")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout before the classifier")
    batch_norm: bool = False


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, img_size: int = 32, **kwargs) -> None:
        super().__init__()
        cfg = SmallCNNConfig.model_validate(kwargs)
        self.config = cfg
        layers: list[nn.Module] = []
        channels, size = 3, int(img_size)
        for b in range(cfg.blocks):
            out = max(1, int(round(cfg.filters * cfg.filter_growth**b)))
            for _ in range(cfg.convs_per_block):
                layers.append(nn.Conv2d(channels, out, cfg.kernel_size, padding="same", bias=not cfg.batch_norm))
                if cfg.batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            layers.append(nn.MaxPool2d(cfg.pool_size))
            size //= cfg.pool_size
            if cfg.conv_dropout:
                layers.append(nn.Dropout(cfg.conv_dropout))
        if size < 1:
            smallest = cfg.pool_size**cfg.blocks
            raise InputError(
                f"resolution {img_size} is too small for {cfg.blocks} pools of {cfg.pool_size}",
                field="resolution",
                hint=f"use a resolution of at least {smallest}, or fewer blocks / a smaller pool_size",
            )
        self.features = nn.Sequential(*layers)
        self.flat_size = channels * size * size
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_size, cfg.dense),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
        )
        self.classifier = nn.Linear(cfg.dense, num_classes)

    def forward(self, x):
        return self.classifier(self.head(self.features(x)))


BENCH_MODELS = {"small_cnn": (SmallCNN, SmallCNNConfig)}
