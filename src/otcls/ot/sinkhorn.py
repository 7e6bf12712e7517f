"""Balanced entropic OT and RE-OT by Sinkhorn's algorithm.

Problem (Cuturi 2013; RE-OT with prior ``Q``):

    min_{P ∈ U(a, b)}  <C, P> + eps · KL~(P | Q),   U(a, b) = {P >= 0, P 1 = a, Pᵀ 1 = b}

with ``KL~(P|Q) = Σ P log(P/Q) - P + Q``; ``Q = 1`` gives ``<C,P> - eps·H(P)`` up to a constant.
The optimum is ``P = diag(u) K diag(v)``, ``K = Q ⊙ exp(-C/eps)``, found by alternating
``u = a / (K v)``, ``v = b / (Kᵀ u)``. Both solvers iterate on ``beta = log v`` (so their
fixed points and gradients agree); ``sinkhorn_log`` takes log-sum-exps and is stable for any
``eps``; ``sinkhorn`` multiplies by ``K`` (fast matrix products) and under/overflows for
small ``eps``.

References: M. Cuturi, "Sinkhorn Distances", NeurIPS 2013. B. Schmitzer, "Stabilized sparse
scaling algorithms for entropy regularized transport problems", SIAM J. Sci. Comput. 2019.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._common import log_marginals, make_result
from ._lse import col_lse, l1_violation, row_lse
from .fixed_point import solve_fixed_point, warn_if_not_converged
from .problem import LinearProblem
from .result import OTResult


def sinkhorn_log(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000,
                 check_every: int = 10, grad: str = "autodiff") -> OTResult:
    """Log-domain Sinkhorn for U(a, b); ``error`` is ``|Pᵀ1 - b|_1 / sum(a)``."""
    log_k = p.log_kernel
    log_a, log_b, _, _ = log_marginals(p)
    mass = p.a.sum(-1)

    def alpha_of(beta):
        return log_a - row_lse(log_k, beta)

    def step(beta):
        return log_b - col_lse(log_k, alpha_of(beta))

    def error(beta):
        return l1_violation(beta + col_lse(log_k, alpha_of(beta)), p.b) / mass

    beta0 = torch.zeros_like(p.b)
    trace = solve_fixed_point(step, beta0, error, tol=tol, max_iter=max_iter, check_every=check_every,
                              grad=grad, shift_invariant=True)
    warn_if_not_converged(trace, tol, max_iter, "sinkhorn_log", "column marginal")
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        beta = trace.z
        return make_result(p, log_k, alpha_of(beta), beta, trace, "sinkhorn_log")


def sinkhorn(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000,
             check_every: int = 10, grad: str = "autodiff") -> OTResult:
    """Scaling-domain Sinkhorn (matrix products with ``K``); raises if ``K`` under/overflows."""
    log_k = p.log_kernel
    K = log_k.exp()
    if not bool((K.sum(-1) > 0).all()) or not bool(torch.isfinite(K).all()):
        raise FloatingPointError(
            f"exp(-C/eps) under/overflows at eps={p.eps.min().item():.3g}: use method='sinkhorn_log'")
    mass = p.a.sum(-1)

    def u_of(beta):
        return p.a / torch.bmm(K, beta.exp().unsqueeze(-1)).squeeze(-1)

    def kt_u(beta):
        return torch.bmm(K.transpose(1, 2), u_of(beta).unsqueeze(-1)).squeeze(-1)

    def step(beta):
        return torch.log(p.b) - torch.log(kt_u(beta))

    def error(beta):
        return (beta.exp() * kt_u(beta) - p.b).abs().sum(-1) / mass

    beta0 = torch.zeros_like(p.b)
    trace = solve_fixed_point(step, beta0, error, tol=tol, max_iter=max_iter, check_every=check_every,
                              grad=grad, shift_invariant=True)
    warn_if_not_converged(trace, tol, max_iter, "sinkhorn", "column marginal")
    if not bool(torch.isfinite(trace.error).all()):
        raise FloatingPointError("scaling-domain Sinkhorn produced inf/NaN (eps too small for exp(-C/eps)); "
                                 "use method='sinkhorn_log'")
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        beta = trace.z
        log_a, _, _, _ = log_marginals(p)
        return make_result(p, log_k, log_a - row_lse(log_k, beta), beta, trace, "sinkhorn")
