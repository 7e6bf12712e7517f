"""The scaling-domain kernel shared by the scaling solvers (balanced Sinkhorn, DB-OT ascent).

``K = exp(log K - max_j log K_ij)``: each row is shifted to a largest entry of 1, which the row
scaling ``u`` absorbs exactly (the plan is unchanged), so no row of ``K`` underflows
(:mod:`otcls.ot.domain` gives the range in which the whole iteration is safe). Without a prior the
shift is ``min_j C_ij / eps`` from the cost's row extremes that the problem already holds, so ``K`` is
one fused pass over the cost. The products go through :class:`otcls.ot.products.Products`.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import buffers
from .problem import LinearProblem
from .products import Products


class ScalingKernel:
    """Row-shifted kernel with the half-steps of one state cached (by identity), so a convergence
    check and the step that follows it share their two matrix products."""

    def __init__(self, p: LinearProblem, out: Optional[torch.Tensor] = None,
                 scratch: Optional[torch.Tensor] = None):
        """``out``: a buffer of the cost's shape to build ``K`` (and later the plan) in; ``scratch``: one of the
        transposed shape for ``Kᵀ``. Both only where no autograd graph is built."""
        self.K, self.shift = row_shifted_kernel(p, out)
        self.products = Products(self.K, scratch)
        self.a = p.a
        self.rows = p.a > 0
        self.all_rows = bool(self.rows.all())
        self.log_a = torch.log(p.a) if self.all_rows else None
        self._cache = self._rows_cache = (None, None)
        self._log_u = None

    def _rows(self, beta: torch.Tensor):
        """``v = e^beta`` and ``s = K v``, cached by identity: shared by a check and the step after it."""
        if self._rows_cache[0] is beta:
            return self._rows_cache[1]
        v = torch.exp(beta)
        out = (v, self.products.matvec(v))
        self._rows_cache = (beta, out)
        return out

    def half_steps(self, beta: torch.Tensor):
        """``v = e^beta``, ``u = a / (K v)`` and ``t = Kᵀ u``; rows with ``a_i = 0`` get ``u_i = 0``."""
        if self._cache[0] is beta:
            return self._cache[1]
        v, s = self._rows(beta)
        # a dead row divides by 1, so no 0/0 enters the graph
        u = self.a / (s if self.all_rows else torch.where(self.rows, s, torch.ones_like(s)))
        t = self.products.vecmat(u)
        out = (v, u, t)
        self._cache = (beta, out)
        return out

    def relaxed_column_sums(self, beta: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """``Kᵀ u`` after the over-relaxed row update ``log u <- log u' + omega (log(a / K e^beta) - log u')``
        (``u'``: this method's previous ``u``; the plain update the first time). Every ``a_i > 0``."""
        _, s = self._rows(beta)
        log_u = self.log_a - torch.log(s)
        if self._log_u is not None:
            log_u = torch.lerp(self._log_u, log_u, omega)
        self._log_u = log_u
        return self.products.vecmat(torch.exp(log_u))

    def plan(self, beta: torch.Tensor):
        """Row log-potentials ``alpha`` (relative to the unshifted ``log K``) and the plan for ``beta``."""
        v, u, _ = self.half_steps(beta)
        if torch.is_grad_enabled() and (self.K.requires_grad or beta.requires_grad):
            plan = u[:, :, None] * self.K * v[:, None, :]
        else:  # the kernel is not needed any more: scale it in place
            plan = self.K.mul_(u[:, :, None]).mul_(v[:, None, :])
            self.products = self._cache = self._rows_cache = self._log_u = None
        alpha = torch.where(self.rows, torch.log(torch.where(self.rows, u, torch.ones_like(u))) - self.shift,
                            torch.full_like(u, -torch.inf))
        return alpha, plan


def row_shifted_kernel(p: LinearProblem, out: Optional[torch.Tensor] = None,
                       offset: Optional[torch.Tensor] = None):
    """``(K, shift)``: ``K = exp(log K - shift + offset)`` with ``shift_i = max_j log K_ij`` (0 for an empty row)
    and an optional per-row ``offset`` ``(B, n)`` folded into the same pass; in ``out`` (or a fresh buffer)
    when no autograd graph is built."""
    eps = p.eps[:, :, None]
    if p.prior is not None:
        log_k = p.log_kernel
        shift = log_k.amax(-1)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        if out is None and not (torch.is_grad_enabled() and log_k.requires_grad):
            out = buffers.empty_like(log_k)
        bias = -shift if offset is None else offset - shift
        return torch.exp(log_k + bias[:, :, None], out=out), shift
    row_min = p.row_extremes()[0][:, :, None]
    shift = -(row_min / eps)[:, :, 0]
    bias = -shift if offset is None else offset - shift
    if torch.is_grad_enabled() and (p.cost.requires_grad or p.eps.requires_grad):
        return torch.exp(bias[:, :, None] - p.cost / eps), shift
    # in place, in two passes: (min_j C_ij - C_ij) / eps + offset_i = bias_i - C_ij / eps, then exp
    out = buffers.empty_like(p.cost) if out is None else out
    return torch.addcmul(bias[:, :, None], p.cost, (-1.0 / eps), out=out).exp_(), shift
