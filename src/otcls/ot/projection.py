"""Barycentric projections of a coupling between samples (rows) and labels (columns).

* sample → label space: ``T(x_i) = (1/a_i) Σ_j P_ij y_j`` (``y_j`` one-hot by default, giving the
  row-normalised plan: each sample's class probabilities).
* label → feature space: ``T'(y_j) = Σ_i P_ij f_i / Σ_i P_ij`` (class barycenters / centroids).

Rows or columns with zero mass have no barycenter: they come back as NaN, with a warning naming them
(a zero vector would look like a real centroid at the origin).
Reference: RE-OT paper, Definition 1 and Eq. 18.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch


def _weights(plan: torch.Tensor, dim: int) -> torch.Tensor:
    """``plan`` normalised along ``dim``; a slice with zero mass becomes NaN (it has no barycenter)."""
    if plan.dim() not in (2, 3):
        raise ValueError(f"plan must be (n, m) or (B, n, m), got shape {tuple(plan.shape)}")
    if (plan < 0).any() or not torch.isfinite(plan).all():
        raise ValueError("plan must be finite and >= 0")
    mass = plan.sum(dim, keepdim=True)
    empty = mass == 0
    if empty.any():
        what = "columns (classes)" if dim == -2 else "rows (samples)"
        idx = torch.nonzero(empty.flatten()).flatten().tolist()
        warnings.warn(f"{what} {idx[:10]} get no mass in the plan and have no barycenter: returned as NaN",
                      RuntimeWarning, stacklevel=3)
    return plan / torch.where(empty, torch.full_like(mass, float("nan")), mass)


def barycentric_projection(plan: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Map each row sample to ``Σ_j P_ij y_j / Σ_j P_ij``; ``y`` is ``(m, k)`` (default identity)."""
    w = _weights(plan, -1)
    if y is None:
        return w
    y = torch.as_tensor(y, dtype=plan.dtype, device=plan.device)
    if y.shape[-2] != plan.shape[-1]:
        raise ValueError(f"y has {y.shape[-2]} rows but the plan has {plan.shape[-1]} columns")
    return w @ y


def class_barycenters(plan: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Map each column (class) to ``Σ_i P_ij f_i / Σ_i P_ij``; ``features`` is ``(n, k)``."""
    features = torch.as_tensor(features, dtype=plan.dtype, device=plan.device)
    if features.shape[-2] != plan.shape[-2]:
        raise ValueError(f"features have {features.shape[-2]} rows but the plan has {plan.shape[-2]} rows")
    w = _weights(plan, -2)
    return w.transpose(-2, -1) @ features
