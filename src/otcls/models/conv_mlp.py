"""A LeNet-style CNN for 28×28 grey images: [conv3×3-BN-ReLU-maxpool] × len(channels), flatten, one hidden FC layer.

With the defaults (channels 16/32, hidden 256) it has about 409k parameters, most of them in the
FC layer, so a CPU step is cheap while the model is large enough for CE to converge on
Fashion-MNIST-LT (the offline benchmark's backbone).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ConvMLP(nn.Module):
    """Features of size ``hidden`` (``out_features``); the classifier is the head's job."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32), hidden: int = 256,
                 image_size: int = 28) -> None:
        super().__init__()
        if not channels:
            raise ValueError("ConvMLP needs at least one conv stage in 'channels'")
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"{len(channels)} pooling stages shrink a {image_size}-pixel image to nothing; "
                             "use fewer channels entries or a larger image_size")
        layers, cin = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            cin = c
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.ReLU())
        self.out_features = int(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
