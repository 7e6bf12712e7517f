"""Linear-probe evaluation of a frozen encoder: extract features, standardise, fit a linear head.

The probe is ``logits = head(standardise(h))`` where ``head`` is a
:class:`otcls.heads.TransportHead` (linear classifier + any registered loss + OT inference),
trained with Adam on the features ``h`` of the (long-tailed) training set; the encoder is never
updated.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm


@torch.no_grad()
def extract_features(encoder: Callable[[torch.Tensor], torch.Tensor], batches: Iterable,
                     device: torch.device, max_batches: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(features (n, d), labels (n,))`` of ``encoder`` over ``(x, y, ...)`` batches, on the CPU."""
    feats, labels = [], []
    for k, batch in enumerate(batches):
        if max_batches is not None and k >= max_batches:
            break
        feats.append(encoder(batch[0].to(device)).flatten(1).float().cpu())
        labels.append(batch[1].cpu())
    if not feats:
        raise ValueError("no batches to extract features from: the dataloader is empty")
    return torch.cat(feats), torch.cat(labels)


class Standardizer(nn.Module):
    """``(h − mean) / std`` per feature, with mean and std fitted on the training features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, h: torch.Tensor) -> "Standardizer":
        if h.dim() != 2 or h.shape[1] != self.mean.numel() or h.shape[0] < 1:
            raise ValueError(f"features must have shape (n >= 1, {self.mean.numel()}), got {tuple(h.shape)}")
        self.mean.copy_(h.mean(0))
        self.std.copy_(h.std(0, unbiased=False).clamp_min(1e-6))
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean) / self.std


def fit_probe(head: nn.Module, h: torch.Tensor, y: torch.Tensor, *, epochs: int = 50, lr: float = 1e-2,
              weight_decay: float = 1e-4, batch_size: int = 512, seed: int = 0,
              progress: bool = False) -> List[float]:
    """Train ``head`` (``head(h) -> logits``, ``head.compute_loss(logits, y)``) on fixed features.

    Adam with cosine-decayed learning rate, shuffled mini-batches (seeded). Returns the mean
    training loss of each epoch.
    """
    num_classes = head.num_classes
    if h.dim() != 2:
        raise ValueError(f"probe features must have shape (n, d), got {tuple(h.shape)}")
    if y.shape != (h.shape[0],):
        raise ValueError(f"probe labels must have shape ({h.shape[0]},), got {tuple(y.shape)}")
    if y.numel() == 0 or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"probe labels must be non-empty and lie in [0, {num_classes})")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"probe epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    y = y.long()
    history = []
    with torch.enable_grad():
        for _ in tqdm(range(epochs), desc="linear probe", leave=False, disable=not progress):
            total = 0.0
            for idx in torch.randperm(len(y), generator=gen).split(batch_size):
                loss = head.compute_loss(head(h[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            sched.step()
            history.append(total / len(y))
    return history
