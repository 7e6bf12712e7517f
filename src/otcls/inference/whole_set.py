"""Whole-evaluation-set coupling: gather logits and sample indices from all ranks, drop the
duplicates a DistributedSampler pads in, solve once, return predictions per original index."""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.distributed as dist


def _all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (rows may differ per rank) from every rank, in rank order."""
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = x.new_zeros((longest,) + tuple(x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])


def gather_unique(logits: torch.Tensor, indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ranks' ``(logits, indices)`` merged, one row per distinct index, sorted by index.

    Without an initialised process group (or with one process) only the deduplication runs.
    """
    if logits.dim() != 2 or indices.dim() != 1 or indices.shape[0] != logits.shape[0]:
        raise ValueError(f"need logits (n, C) and indices (n,); got {tuple(logits.shape)} and {tuple(indices.shape)}")
    indices = indices.long()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        logits, indices = _all_gather_rows(logits.detach()), _all_gather_rows(indices)
    unique, inverse = torch.unique(indices, sorted=True, return_inverse=True)
    first = torch.full((unique.numel(),), indices.numel(), dtype=torch.long, device=indices.device)
    first.scatter_reduce_(0, inverse, torch.arange(indices.numel(), device=indices.device), reduce="amin")
    return logits[first], unique


def whole_set_predict(head: Any, logits: torch.Tensor, indices: torch.Tensor,
                      **predict_kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """Predict every evaluation sample with one coupling over the whole set.

    ``head`` is a :class:`otcls.heads.TransportHead`; ``predict_kwargs`` go to ``head.predict``
    (``mode``, ``test_prior``, ``eps``, ``delta``, ...). Call it on every rank (it is
    collective); each rank gets the same ``(indices, predictions)``, sorted by index.
    """
    all_logits, unique = gather_unique(logits, indices)
    return unique, head.predict(all_logits, **predict_kwargs)
