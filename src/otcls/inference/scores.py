"""OT inference scores: couple a set of samples to the classes with an assumed class prior b."""
from __future__ import annotations

from typing import Optional

import torch

MODES = ("softmax", "tau_norm", "class_bias", "reot", "dbot")
PRIOR_MODES = ("class_bias", "reot", "dbot")  # modes that take a test prior
OT_MODES = ("reot", "dbot")  # modes that couple a set of samples


def ot_scores(logits: torch.Tensor, prior: torch.Tensor, *, mode: str, eps: float = 1.0, delta: float = 0.1,
              tol: Optional[float] = 1e-4, max_iter: int = 5000, batch_size: Optional[int] = None,
              seed: int = 0) -> torch.Tensor:
    """Row-normalised coupling n·P between samples and classes, cost C = -logits.

    ``reot``: P ∈ U(1/n, b) (balanced Sinkhorn, entropic regulariser ``eps``).
    ``dbot``: rows 1/n, columns in [(1-δ)·b, (1+δ)·b] (exact DB-OT dual ascent).
    ``batch_size=None`` couples all n rows at once (whole set). Otherwise the rows are put in a
    seeded random order and cut into batches of ``batch_size`` (the last one shorter), and each
    batch gets its own coupling with the same ``b`` — the DB-OT paper's per-batch inference, whose
    bounds absorb the batch's sampling noise. Predict with ``argmax_j`` of the result. The default
    ``tol`` (relative marginal error 1e-4) is loose on purpose: it fixes the argmax; no gradient
    is kept (inference only).
    """
    if mode not in ("reot", "dbot"):
        raise ValueError(f"ot_scores mode must be 'reot' or 'dbot'; got '{mode}'")
    if eps <= 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be (n >= 1, C); got {tuple(logits.shape)}")
    if mode == "dbot" and (delta is None or delta < 0):
        raise ValueError(f"dbot inference needs delta >= 0; got {delta}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"OT inference batch_size must be >= 1 or None (whole set); got {batch_size}")
    n = logits.shape[0]
    if batch_size is None or batch_size >= n:
        return _coupling(logits, prior, mode, eps, delta, tol, max_iter)
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=gen).to(logits.device)
    full = (n // batch_size) * batch_size
    scores = torch.empty_like(logits)
    head = logits[order[:full]].reshape(n // batch_size, batch_size, -1)
    scores[order[:full]] = _coupling(head, prior, mode, eps, delta, tol, max_iter).reshape(full, -1)
    if full < n:
        scores[order[full:]] = _coupling(logits[order[full:]], prior, mode, eps, delta, tol, max_iter)
    return scores


def _coupling(logits: torch.Tensor, prior: torch.Tensor, mode: str, eps: float, delta: float,
              tol: Optional[float], max_iter: int) -> torch.Tensor:
    """n·P for logits ``(n, C)`` or a stack of equal batches ``(k, n, C)`` (solved as one batched problem)."""
    from otcls.ot import solve

    n = logits.shape[-2]
    b = prior.to(logits)
    a = torch.full((n,), 1.0 / n, dtype=logits.dtype, device=logits.device)
    if mode == "reot":
        res = solve(-logits, a, b, eps=eps, tol=tol, max_iter=max_iter, grad="detach")
    else:
        res = solve(-logits, a, eps=eps, lower=((1.0 - delta) * b).clamp_min(0.0), upper=(1.0 + delta) * b,
                    tol=tol, max_iter=max_iter, grad="detach")
    return res.plan * n
