"""The scaling-domain kernel shared by the scaling solvers (balanced Sinkhorn, DB-OT ascent).

``K = exp(log K - max_j log K_ij)``: each row is shifted to a largest entry of 1, which the row
scaling ``u`` absorbs exactly (the plan is unchanged), so no row of ``K`` underflows
(:mod:`otcls.ot.domain` gives the range in which the whole iteration is safe). The products go
through :class:`otcls.ot.products.Products` (batched GEMM, or one GEMV for a single problem).
"""
from __future__ import annotations

import torch

from .products import Products


class ScalingKernel:
    """Row-shifted kernel with the half-steps of one state cached (by identity), so a convergence
    check and the step that follows it share their two matrix products."""

    def __init__(self, log_k: torch.Tensor, a: torch.Tensor):
        shift = log_k.amax(-1)
        self.shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        self.K = torch.exp(log_k - self.shift[:, :, None])
        self.products = Products(self.K)
        self.a = a
        self.rows = a > 0
        self.all_rows = bool(self.rows.all())
        self._cache = (None, None)

    def half_steps(self, beta: torch.Tensor):
        """``v = e^beta``, ``u = a / (K v)`` and ``t = Kᵀ u``; rows with ``a_i = 0`` get ``u_i = 0``."""
        if self._cache[0] is beta:
            return self._cache[1]
        v = torch.exp(beta)
        s = self.products.matvec(v)
        # a dead row divides by 1, so no 0/0 enters the graph
        u = self.a / (s if self.all_rows else torch.where(self.rows, s, torch.ones_like(s)))
        t = self.products.vecmat(u)
        out = (v, u, t)
        self._cache = (beta, out)
        return out

    def plan(self, beta: torch.Tensor):
        """Row log-potentials ``alpha`` (relative to the unshifted ``log K``) and the plan for ``beta``."""
        v, u, _ = self.half_steps(beta)
        plan = u[:, :, None] * self.K * v[:, None, :]
        alpha = torch.where(self.rows, torch.log(torch.where(self.rows, u, torch.ones_like(u))) - self.shift,
                            torch.full_like(u, -torch.inf))
        return alpha, plan
