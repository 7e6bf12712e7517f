"""Centroid updates of DB-OT barycenter clustering (DB-OT paper, Eq. 16-17).

With the plan ``P`` (n, k) fixed, centroid ``c_k`` minimises ``Σ_i w_ik d(x_i, c_k)`` with
barycenter weights ``w_ik = λ_ik P_ik``. Without re-weighting ``λ_ik = 1``: every sample
pulls every centroid by its (soft) mass, which biases centroids towards the data mean when
``eps`` is not small. With re-weighting ``λ_ik = 1`` if ``k = argmax_j P_ij`` else ``0``:
a centroid is the P-weighted barycenter of the samples the plan assigns to it. A cluster
that is nobody's argmax keeps ``λ_ik = 1`` (its plain P-weighted barycenter); a cluster
whose weights all underflow to zero keeps its previous centroid.
"""
from __future__ import annotations

import torch

from otcls.ot import barycenter




def barycenter_weights(plan: torch.Tensor, reweight: bool) -> torch.Tensor:
    """``W = λ ⊙ P`` (n, k) as described in the module docstring."""
    if not reweight:
        return plan
    lam = torch.zeros_like(plan)
    lam.scatter_(1, plan.argmax(1, keepdim=True), 1.0)
    orphan = lam.sum(0) == 0
    lam[:, orphan] = 1.0
    return lam * plan


def euclidean_centroids(X: torch.Tensor, W: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Weighted means ``c_k = Σ_i W_ik x_i / Σ_i W_ik`` (k, d)."""
    mass = W.sum(0)
    means = (W.T @ X) / mass.clamp_min(torch.finfo(W.dtype).tiny)[:, None]
    return torch.where((mass > 0)[:, None], means, prev)


def wasserstein_centroids(H: torch.Tensor, W: torch.Tensor, prev: torch.Tensor, ground: torch.Tensor,
                          eps: float, max_iter: int = 1000) -> torch.Tensor:
    """Bregman barycenters (Benamou et al. 2015) of histograms ``H`` (n, d), weights ``W[:, k]``."""
    centers = []
    for k in range(W.shape[1]):
        keep = W[:, k] > 0
        if not bool(keep.any()):
            centers.append(prev[k])
            continue
        w = W[keep, k] / W[keep, k].sum()
        centers.append(barycenter(H[keep], ground, eps=eps, weights=w, max_iter=max_iter).barycenter)
    return torch.stack(centers)
