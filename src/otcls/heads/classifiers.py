"""Classifier layers: linear, and cosine (normalised features and weights times a scale)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """z_j = s · <x/||x||, w_j/||w_j||> (no bias)."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 16.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"cosine classifier scale must be > 0; got {scale}")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = float(scale)
        self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


def build_classifier(kind: str, in_features: int, num_classes: int, scale: float) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes, scale)
    raise ValueError(f"unknown classifier '{kind}'; choose one of: linear, cosine")
