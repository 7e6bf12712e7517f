"""Log-domain reductions used by every solver (rows: sum over j; cols: sum over i)."""
from __future__ import annotations

import torch


def row_lse(log_k: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``LSE_j(log K_ij + beta_j)`` -> (B, n)."""
    return torch.logsumexp(log_k + beta[:, None, :], dim=-1)


def col_lse(log_k: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``LSE_i(log K_ij + alpha_i)`` -> (B, m)."""
    return torch.logsumexp(log_k + alpha[:, :, None], dim=-2)


def nan_to_zero(x: torch.Tensor) -> torch.Tensor:
    """Scaling updates of dead rows/columns (``-inf - -inf``) are no-ops, not NaN."""
    return torch.where(torch.isnan(x), torch.zeros_like(x), x)


def l1_violation(log_sum: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (log_sum.exp() - target).abs().sum(-1)


def bound_violation(log_sum: torch.Tensor, lower, upper) -> torch.Tensor:
    s = log_sum.exp()
    v = torch.zeros_like(s)
    if lower is not None:
        v = v + (lower - s).clamp_min(0)
    if upper is not None:
        v = v + (s - upper).clamp_min(0)
    return v.sum(-1)
