"""OT inference scores: couple a set of samples to the classes with an assumed class prior b."""
from __future__ import annotations

from typing import Optional

import torch

MODES = ("softmax", "tau_norm", "class_bias", "reot", "dbot")


def ot_scores(logits: torch.Tensor, prior: torch.Tensor, *, mode: str, eps: float = 1.0, delta: float = 0.1,
              tol: Optional[float] = 1e-4, max_iter: int = 5000) -> torch.Tensor:
    """Row-normalised coupling n·P between the n samples and the classes, cost C = -logits.

    ``reot``: P ∈ U(1/n, b) (balanced Sinkhorn, entropic regulariser ``eps``).
    ``dbot``: rows 1/n, columns in [(1-δ)·b, (1+δ)·b] (exact DB-OT dual ascent).
    Predict with ``argmax_j`` of the result. The default ``tol`` (relative marginal error
    1e-4) is loose on purpose: it fixes the argmax; no gradient is kept (inference only).
    """
    from otcls.ot import solve

    if mode not in ("reot", "dbot"):
        raise ValueError(f"ot_scores mode must be 'reot' or 'dbot'; got '{mode}'")
    if eps <= 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be (n >= 1, C); got {tuple(logits.shape)}")
    n = logits.shape[0]
    b = prior.to(logits)
    a = torch.full((n,), 1.0 / n, dtype=logits.dtype, device=logits.device)
    if mode == "reot":
        res = solve(-logits, a, b, eps=eps, tol=tol, max_iter=max_iter, grad="detach")
    else:
        if delta is None or delta < 0:
            raise ValueError(f"dbot inference needs delta >= 0; got {delta}")
        res = solve(-logits, a, eps=eps, lower=((1.0 - delta) * b).clamp_min(0.0), upper=(1.0 + delta) * b,
                    tol=tol, max_iter=max_iter, grad="detach")
    return res.plan * n
