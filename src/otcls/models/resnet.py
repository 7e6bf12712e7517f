"""ResNet-10 for ImageNet-LT (the Liu et al. 2019 baseline backbone): torchvision's ResNet with [1,1,1,1] basic blocks."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet


class ResNet10(nn.Module):
    """torchvision ResNet(BasicBlock, [1, 1, 1, 1]) without its fc layer; outputs 512-dim features."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        net = ResNet(BasicBlock, [1, 1, 1, 1])
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.out_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
