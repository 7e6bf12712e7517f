"""Two-view augmentation for contrastive learning, applied per sample to a normalised image batch.

SimCLR's view generator (Chen et al. 2020): random resized crop, horizontal flip, colour jitter
(p = 0.8) and, for colour images, random greyscale (p = 0.2). It runs on the batch tensor the
DataModule already produced (any normalisation: every op is geometric or an affine intensity
map, and an affine map of normalised pixels is an affine map of raw pixels), with independent
random parameters per image, vectorised with ``affine_grid``/``grid_sample`` so it costs little
on CPU and stays on the accelerator.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class TwoViewAugment(nn.Module):
    """``aug(x) -> (v1, v2)``: two independent random views of every image of ``x`` (B, C, H, W).

    Args:
        scale: range of the crop's area as a fraction of the image (RandomResizedCrop).
        ratio: range of the crop's aspect ratio (sampled log-uniformly).
        flip_p: probability of a horizontal flip.
        jitter: strength ``s`` of brightness/contrast jitter: contrast factor in ``[1−s, 1+s]``
            about the image mean, brightness shift in ``[−s, s]`` (normalised units).
        jitter_p: probability that an image is jittered.
        gray_p: probability of greyscale (channel mean) for images with 3 channels.
    """

    def __init__(self, scale: Sequence[float] = (0.2, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip_p: float = 0.5, jitter: float = 0.4, jitter_p: float = 0.8, gray_p: float = 0.2) -> None:
        super().__init__()
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {tuple(scale)}")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {tuple(ratio)}")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("gray_p", gray_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        self.flip_p, self.jitter, self.jitter_p, self.gray_p = flip_p, jitter, jitter_p, gray_p

    def _crop_flip(self, x: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
        b = x.shape[0]
        u = torch.rand(b, 5, generator=gen, device=x.device, dtype=x.dtype)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        log_r = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * u[:, 1]
        ratio = log_r.exp()
        # Crop width/height as fractions of the image side, clipped to fit.
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (1 - w) * (2 * u[:, 2] - 1)  # centre in [-(1-w), 1-w] (grid coordinates span [-1, 1])
        cy = (1 - h) * (2 * u[:, 3] - 1)
        flip = torch.where(u[:, 4] < self.flip_p, -1.0, 1.0).to(x.dtype)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _photometric(self, x: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
        b = x.shape[0]
        u = torch.rand(b, 4, generator=gen, device=x.device, dtype=x.dtype)
        on = (u[:, 0] < self.jitter_p).to(x.dtype)
        contrast = 1 + on * self.jitter * (2 * u[:, 1] - 1)
        bright = on * self.jitter * (2 * u[:, 2] - 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast.view(b, 1, 1, 1) + mean + bright.view(b, 1, 1, 1)
        if x.shape[1] == 3 and self.gray_p > 0:
            gray = (u[:, 3] < self.gray_p).view(b, 1, 1, 1)
            x = torch.where(gray, x.mean(dim=1, keepdim=True).expand_as(x), x)
        return x

    def view(self, x: torch.Tensor, gen: Optional[torch.Generator] = None) -> torch.Tensor:
        """One random view of each image."""
        if x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"expected a float image batch of shape (B, C, H, W), got {tuple(x.shape)} {x.dtype}")
        return self._photometric(self._crop_flip(x, gen), gen)

    def forward(self, x: torch.Tensor, gen: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.view(x, gen), self.view(x, gen)
