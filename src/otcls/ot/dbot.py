"""Double-bounded OT (DB-OT): rows fixed, column sums between bounds.

Problem (Shen et al., AAAI 2024; with an optional RE-OT prior ``Q``):

    min_P  <C, P> + eps · KL~(P | Q)   s.t.  P 1 = a,   lower <= Pᵀ 1 <= upper

feasible iff ``lower <= upper`` and ``sum(lower) <= sum(a) <= sum(upper)``. The optimum is
``P = diag(u) K diag(v)`` with ``K = Q ⊙ exp(-C/eps)``. Five solvers:

* :func:`dbot_ascent` — exact block-coordinate ascent on the dual, in the log domain:
  ``u = a/(Kv)``; ``s = Kᵀu``; ``v = max(lower/s, min(1, upper/s))``.
* :func:`dbot_ascent_scaling` — the same ascent with matrix products in the scaling domain; the
  default when the kernel's range allows it (:mod:`otcls.ot.domain`), else :func:`dbot_ascent`.
* :func:`dbot_three_scaling` — the same ascent with ``v = v_l ⊙ v_u`` split into a
  lower-bound scaling ``v_l >= 1`` and an upper-bound scaling ``v_u <= 1`` (the paper's
  Sinkhorn-Knopp form ``P = diag(u) K diag(v_l) diag(v_u)``).
* :func:`dbot_dykstra` — Dykstra-corrected KL (Bregman) projections onto ``{P1 = a}``,
  ``{Pᵀ1 >= lower}``, ``{Pᵀ1 <= upper}`` (Bauschke & Lewis 2000).
* :func:`dbot_cyclic` — the same projections **without** Dykstra's correction, as in the
  DB-OT paper's appendix. It reaches a feasible plan that is in general **not** the optimum
  (measured: objective 0.005 too high on a 30×6 problem); kept only for comparison.

All but the last reach the same optimum; all but the scaling one work in the log domain.
``error`` is ``(|P1 - a|_1 + bound violation) / sum(a)``.

References: Shen, Zhang, Yan, "Double-Bounded Optimal Transport for Advanced Clustering and
Classification", AAAI 2024. H. Bauschke, A. Lewis, "Dykstra's algorithm with Bregman
projections: a convergence proof", Optimization 48, 2000.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._common import log_marginals, make_result
from ._lse import bound_violation, col_lse, l1_violation, nan_to_zero, row_lse
from .fixed_point import solve_fixed_point, warn_if_not_converged
from .problem import LinearProblem
from .result import OTResult
from .scaling import ScalingKernel

_INF = float("inf")


def _bounds(p: LinearProblem):
    log_a, _, log_l, log_u = log_marginals(p)
    m = p.cost.shape[-1]
    full = p.a.new_full((p.a.shape[0], m), 0.0)
    log_l = log_l if log_l is not None else full - _INF
    log_u = log_u if log_u is not None else full + _INF
    return log_a, log_l, log_u


def _finish(p, log_k, trace, alpha, beta, method, tol, max_iter):
    warn_if_not_converged(trace, tol, max_iter, method, "row marginal + column bound")
    return make_result(p, log_k, alpha, beta, trace, method)


def dbot_ascent(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000, beta0=None,
                check_every: int = 10, grad: str = "autodiff") -> OTResult:
    """Exact dual block-coordinate ascent; state ``beta = log v``."""
    log_k = p.log_kernel
    log_a, log_l, log_u = _bounds(p)
    mass = p.a.sum(-1)

    def alpha_of(beta):
        return log_a - row_lse(log_k, beta)

    def step(beta):
        t = col_lse(log_k, alpha_of(beta))
        return nan_to_zero(torch.maximum(log_l - t, torch.minimum(torch.zeros_like(t), log_u - t)))

    def error(beta):
        return bound_violation(beta + col_lse(log_k, alpha_of(beta)), p.lower, p.upper) / mass

    trace = solve_fixed_point(step, p.initial_beta() if beta0 is None else beta0, error, tol=tol, max_iter=max_iter,
                              check_every=check_every, grad=grad)
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        beta = trace.z
        return _finish(p, log_k, trace, alpha_of(beta), beta, "dbot_ascent", tol, max_iter)


def dbot_ascent_scaling(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000, beta0=None,
                        check_every: int = 10, grad: str = "autodiff", out=None, scratch=None) -> OTResult:
    """:func:`dbot_ascent` in the scaling domain (matrix products with the row-shifted ``K``, no
    log-sum-exp); same state ``beta = log v`` and fixed point. Safe when
    :func:`otcls.ot.domain.scaling_safe` holds; raises ``FloatingPointError`` if it under/overflows.
    ``out``, ``scratch``: as in :func:`otcls.ot.sinkhorn.sinkhorn`."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        kernel = ScalingKernel(p, out, scratch)
    _, log_l, log_u = _bounds(p)
    mass = p.a.sum(-1)

    def step(beta):
        t = torch.log(kernel.half_steps(beta)[2])
        return nan_to_zero(torch.maximum(log_l - t, torch.minimum(torch.zeros_like(t), log_u - t)))

    def error(beta):
        v, _, t = kernel.half_steps(beta)
        return bound_violation(torch.log(v * t), p.lower, p.upper) / mass

    trace = solve_fixed_point(step, p.initial_beta() if beta0 is None else beta0, error, tol=tol, max_iter=max_iter,
                              check_every=check_every, grad=grad)
    if not bool(torch.isfinite(trace.error).all()):
        raise FloatingPointError("scaling-domain DB-OT produced inf/NaN (eps too small for exp(-C/eps)); "
                                 "use method='dbot_ascent' or 'auto'")
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        alpha, plan = kernel.plan(trace.z)
        warn_if_not_converged(trace, tol, max_iter, "dbot_ascent_scaling", "row marginal + column bound")
        return make_result(p, None, alpha, trace.z, trace, "dbot_ascent_scaling", plan=plan)


def dbot_three_scaling(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000, beta0=None,
                       check_every: int = 10, grad: str = "autodiff") -> OTResult:
    """Sinkhorn-Knopp with separate lower (``>= 1``) and upper (``<= 1``) column scalings."""
    log_k = p.log_kernel
    log_a, log_l, log_u = _bounds(p)
    m = log_l.shape[-1]
    mass = p.a.sum(-1)

    def alpha_of(beta):
        return log_a - row_lse(log_k, beta)

    def step(z):
        bl, bu = z[:, :m], z[:, m:]
        t = col_lse(log_k, alpha_of(bl + bu))
        bl = nan_to_zero((log_l - t - bu).clamp_min(0))
        bu = nan_to_zero((log_u - t - bl).clamp_max(0))
        return torch.cat([bl, bu], dim=-1)

    def error(z):
        beta = z[:, :m] + z[:, m:]
        return bound_violation(beta + col_lse(log_k, alpha_of(beta)), p.lower, p.upper) / mass

    beta0 = p.initial_beta() if beta0 is None else beta0
    z0 = torch.cat([beta0.clamp_min(0), beta0.clamp_max(0)], dim=-1)
    trace = solve_fixed_point(step, z0, error, tol=tol, max_iter=max_iter, check_every=check_every, grad=grad)
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        beta = trace.z[:, :m] + trace.z[:, m:]
        return _finish(p, log_k, trace, alpha_of(beta), beta, "dbot_three_scaling", tol, max_iter)


def _projections(p: LinearProblem, corrected: bool, method: str, tol, max_iter, check_every, grad,
                 beta0=None) -> OTResult:
    """Cyclic KL projections on (alpha, beta) with ``log P = log K + alpha_i + beta_j``.

    Each projection only rescales rows or columns, so Dykstra's correction for a set is the
    inverse of that set's last scaling: a vector, not a matrix.
    """
    log_k = p.log_kernel
    log_a, log_l, log_u = _bounds(p)
    n, m = log_k.shape[-2:]
    mass = p.a.sum(-1)
    alive = p.a > 0

    def split(z):
        return z[:, :n], z[:, n:n + m], z[:, n + m:2 * n + m], z[:, 2 * n + m:2 * n + 2 * m], z[:, 2 * n + 2 * m:]

    def step(z):
        alpha, beta, r1, c2, c3 = split(z)
        alpha = alpha + r1
        w1 = torch.where(alive, log_a - row_lse(log_k + alpha[:, :, None], beta), -_INF)
        alpha = alpha + w1
        beta = beta + c2
        w2 = nan_to_zero((log_l - col_lse(log_k + beta[:, None, :], alpha)).clamp_min(0))
        beta = beta + w2
        beta = beta + c3
        w3 = nan_to_zero((log_u - col_lse(log_k + beta[:, None, :], alpha)).clamp_max(0))
        beta = beta + w3
        if corrected:
            r1 = torch.where(alive, -w1, torch.zeros_like(w1))
            c2 = torch.where(torch.isfinite(w2), -w2, torch.zeros_like(w2))
            c3 = torch.where(torch.isfinite(w3), -w3, torch.zeros_like(w3))
        return torch.cat([alpha, beta, r1, c2, c3], dim=-1)

    def error(z):
        alpha, beta = z[:, :n], z[:, n:n + m]
        log_p = log_k + alpha[:, :, None] + beta[:, None, :]
        return (l1_violation(torch.logsumexp(log_p, -1), p.a)
                + bound_violation(torch.logsumexp(log_p, -2), p.lower, p.upper)) / mass

    z0 = torch.zeros(log_k.shape[0], 2 * n + 3 * m, dtype=log_k.dtype, device=log_k.device)
    if beta0 is not None:
        z0[:, n:n + m] = beta0
    trace = solve_fixed_point(step, z0, error, tol=tol, max_iter=max_iter, check_every=check_every, grad=grad)
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        alpha, beta = trace.z[:, :n], trace.z[:, n:n + m]
        return _finish(p, log_k, trace, alpha, beta, method, tol, max_iter)


def dbot_dykstra(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000, beta0=None,
                 check_every: int = 10, grad: str = "autodiff") -> OTResult:
    """Dykstra-corrected cyclic KL projections (converges to the DB-OT optimum)."""
    return _projections(p, True, "dbot_dykstra", tol, max_iter, check_every, grad, beta0)


def dbot_cyclic(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000, beta0=None,
                check_every: int = 10, grad: str = "autodiff") -> OTResult:
    """Plain cyclic KL projections, NOT optimal in general (see module docstring)."""
    return _projections(p, False, "dbot_cyclic", tol, max_iter, check_every, grad, beta0)
