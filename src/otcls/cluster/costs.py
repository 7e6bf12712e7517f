"""Sample-to-centroid costs for barycenter clustering.

Euclidean space: ``C_ik = |x_i - c_k|²``. Wasserstein space: samples and centroids are
histograms on a regular grid; ``C_ik`` is the entropic OT cost ``<M, P*>`` of the plan
between ``x_i`` and ``c_k`` with ground cost ``M`` = squared distance between grid cells
(coordinates scaled to ``[0, 1]``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from otcls.ot import solve


def squared_euclidean(X: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``C_ik = |x_i - c_k|²`` (n, k), from the differences (exact, and for few features much faster than
    ``cdist``) unless the ``(n, k, d)`` differences would not fit in 128 MB."""
    n, d = X.shape
    if n * centers.shape[0] * d * X.element_size() <= 2 ** 27:
        return (X[:, None, :] - centers[None, :, :]).pow(2).sum(-1)
    return torch.cdist(X, centers).pow(2)


def grid_shape_for(n_features: int, grid_shape) -> tuple:
    """``grid_shape`` if given (its product must equal ``n_features``), else the square grid."""
    if grid_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(f"space='wasserstein' needs grid_shape for {n_features} features "
                             "(not a square number), e.g. grid_shape=(h, w) with h*w = n_features")
        return (side, side)
    shape = tuple(int(s) for s in grid_shape)
    if math.prod(shape) != n_features:
        raise ValueError(f"grid_shape {shape} has {math.prod(shape)} cells but X has {n_features} features")
    return shape


def grid_cost(shape: Sequence[int], dtype=torch.float64) -> torch.Tensor:
    """Squared Euclidean distance between the cells of a grid, coordinates in ``[0, 1]`` (d, d)."""
    axes = [torch.linspace(0.0, 1.0, s, dtype=dtype) if s > 1 else torch.zeros(1, dtype=dtype) for s in shape]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape))
    return torch.cdist(coords, coords).pow(2)


def wasserstein_cost(H: torch.Tensor, centers: torch.Tensor, ground: torch.Tensor, eps: float,
                     max_iter: int = 1000, tol: float = 1e-4, chunk: int = 2048) -> torch.Tensor:
    """Entropic OT cost between every histogram ``H_i`` (n, d) and centroid ``c_k`` (k, d) → (n, k).

    The n·k Sinkhorn problems run batched, stopping at relative marginal error ``tol``.
    """
    n, k = H.shape[0], centers.shape[0]
    a = H.repeat_interleave(k, 0)
    b = centers.repeat(n, 1)
    out = []
    for s in range(0, n * k, chunk):
        e = min(s + chunk, n * k)
        res = solve(ground.expand(e - s, -1, -1), a[s:e], b[s:e], eps=eps, tol=tol, max_iter=max_iter)
        out.append(res.transport_cost)
    return torch.cat(out).reshape(n, k)
