"""Balanced entropic OT and RE-OT by Sinkhorn's algorithm.

Problem (Cuturi 2013; RE-OT with prior ``Q``):

    min_{P ∈ U(a, b)}  <C, P> + eps · KL~(P | Q),   U(a, b) = {P >= 0, P 1 = a, Pᵀ 1 = b}

with ``KL~(P|Q) = Σ P log(P/Q) - P + Q``; ``Q = 1`` gives ``<C,P> - eps·H(P)`` up to a constant.
The optimum is ``P = diag(u) K diag(v)``, ``K = Q ⊙ exp(-C/eps)``, found by alternating
``u = a / (K v)``, ``v = b / (Kᵀ u)``. Both solvers iterate on ``beta = log v`` (so their
fixed points and gradients agree). ``sinkhorn`` multiplies by ``K`` and under/overflows for
small ``eps``. ``sinkhorn_log`` is stable for any ``eps``: it keeps log-potentials and
multiplies by the *absorbed* kernel ``K~ = exp(log K + alpha~_i + beta~_j)`` (Schmitzer's
log-stabilisation), re-absorbing the scalings whenever they leave ``[e^-T, e^T]`` and falling
back to an exact log-sum-exp step if a row or column of ``K~`` underflows — matrix products at
the speed of the scaling solver, with the range of the log domain.

References: M. Cuturi, "Sinkhorn Distances", NeurIPS 2013. B. Schmitzer, "Stabilized sparse
scaling algorithms for entropy regularized transport problems", SIAM J. Sci. Comput. 2019.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from . import buffers
from . import fused as fused_loop
from . import single
from ._common import log_marginals, make_result
from ._lse import col_lse, l1_violation, row_lse
from .fixed_point import solve_fixed_point, warn_if_not_converged
from .problem import LinearProblem
from .products import Products
from .result import OTResult
from .scaling import ScalingKernel, row_shifted_kernel


class _AbsorbedStep:
    """One Sinkhorn step ``beta -> log b - log Kᵀ(a / K e^beta)`` through an absorbed kernel.

    The half-steps of the last state seen are cached (by identity), so the convergence check of
    a state and the step that follows it share their two matrix products. Between convergence
    checks the step does not synchronise with the device: it records on the device whether a step
    left the range (non-finite scalings) and how far the scalings drifted, and the loop reads that
    at the check (:class:`~otcls.ot.fixed_point.Guard`): drift past ``threshold`` re-absorbs, a step out
    of range makes the loop replay the steps since the last check with ``careful`` set, where every
    step checks itself and falls back to an exact log-sum-exp step.
    """

    def __init__(self, p: LinearProblem, log_a, log_b, threshold: float, log_k=None):
        """``log_k``: the problem's ``log K`` when a graph needs it; else it is formed only if a fallback
        needs it (the kernel is absorbed straight from the cost)."""
        self.p, self._log_k = p, log_k
        self.log_a, self.log_b, self.threshold = log_a, log_b, threshold
        self.rows, self.cols = log_a > -torch.inf, log_b > -torch.inf
        self.all_rows, self.all_cols = bool(self.rows.all()), bool(self.cols.all())
        self.a = log_a.exp()
        self.kernel = None
        self.stale = True
        self.careful = False
        self._cache = self._rows_cache = (None, None)
        self.relaxed_alpha = None  # absolute log row scalings of the last over-relaxed step
        self._watch()

    @property
    def log_k(self) -> torch.Tensor:
        if self._log_k is None:
            self._log_k = self.p.log_kernel
        return self._log_k

    def _watch(self):
        self.bad = torch.zeros((), dtype=torch.bool, device=self.log_a.device)
        self.drift = torch.zeros((), dtype=self.log_a.dtype, device=self.log_a.device)

    def _absorb(self, beta):
        # alpha~ from an exact row update, so every row of K~ sums to a_i: no row underflows.
        self.beta_abs = beta
        if self._log_k is not None and torch.is_grad_enabled() and (self._log_k.requires_grad or beta.requires_grad):
            self.alpha_abs = self.log_a - row_lse(self.log_k, beta)
            self.kernel = torch.exp(self.log_k + self.alpha_abs[:, :, None] + beta[:, None, :])
        elif self._log_k is None and self.p.prior is None and not bool(beta.any()):
            # the first absorption, from beta = 0: the scaling solvers' row-shifted kernel times a_i (the shift
            # comes from the problem's row extremes), K~ = a_i e^((min_j C_ij - C_ij) / eps), in two passes over
            # the matrix, no reductions; its rows peak at a_i and sum to a_i times [1, m], so u starts in [1/m, 1]
            self.kernel, shift = row_shifted_kernel(self.p, offset=self.log_a)
            self.alpha_abs = self.log_a - shift
        else:
            # the same in one buffer: K~ = e^(z - max z) * a / sum e^(z - max z) with z = log K + beta
            # (z straight from the cost when log K is not formed: one pass, one buffer fewer)
            z = buffers.empty_like(self.p.cost)
            if self._log_k is None and self.p.prior is None:
                torch.addcmul(beta[:, None, :], self.p.cost, (-1.0 / self.p.eps)[:, :, None], out=z)
            else:
                torch.add(self.log_k, beta[:, None, :], out=z)
            top = z.amax(-1, keepdim=True)
            top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # rows with no kernel entry
            rows = z.sub_(top).exp_().sum(-1)
            self.alpha_abs = self.log_a - top[:, :, 0] - torch.log(rows)
            self.kernel = z.mul_(torch.where(self.rows, self.a / rows, torch.zeros_like(rows))[:, :, None])
        self.products = Products(self.kernel)
        self.stale = False

    def _rows(self, beta):
        """``v = e^(beta - beta~)`` and ``s = K~ v`` (absorbed units; re-absorbing first when due), cached by
        identity: shared by a check and the step after it."""
        if self._rows_cache[0] is beta:
            return self._rows_cache[1]
        if self.stale or (self.careful and float(_spread(beta - self.beta_abs, not self.all_cols)) > self.threshold):
            self._absorb(beta)
        v = torch.exp(beta - self.beta_abs) if self.all_cols else _exp_ratio(beta, self.beta_abs)
        out = (v, self.products.matvec(v))
        self._rows_cache = (beta, out)
        return out

    def _half_steps(self, beta):
        """``v = e^(beta - beta~)``, ``s = K~ v``, ``u = a / s`` and ``t = K~ᵀ u`` (absorbed units)."""
        if self._cache[0] is beta:
            return self._cache[1]
        v, s = self._rows(beta)
        # dead rows/columns: divide by 1, so no 0/0 or log(0) enters the graph
        s_safe = s if self.all_rows else torch.where(self.rows, s, torch.ones_like(s))
        u = self.a / s_safe
        t = self.products.vecmat(u)
        t = t if self.all_cols else torch.where(self.cols, t, torch.ones_like(t))
        out = (v, s_safe, u, t)
        self._cache = (beta, out)
        return out

    def finalize(self, beta):
        """Row potentials and plan from the absorbed kernel (no log-sum-exp over the matrix)."""
        v, s, u, _ = self._half_steps(beta)
        plan = self.kernel.mul_(u[:, :, None]).mul_(v[:, None, :])  # called without autograd: in place
        self.products = self._cache = self._rows_cache = None
        lo, hi = torch.aminmax(plan.detach())  # NaN propagates: one pass instead of isfinite's two
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi)) and bool((s > 0).all())):
            alpha = self.log_a - row_lse(self.log_k, beta)
            return alpha, torch.exp(self.log_k + alpha[:, :, None] + beta[:, None, :])
        return torch.where(self.rows, self.alpha_abs + self.log_a - torch.log(s), self.log_a), plan

    def column_error(self, beta, b):
        """``|Pᵀ1 - b|_1`` of the plan with rows fitted to ``beta``: two products, no log-sum-exp."""
        v, _, _, t = self._half_steps(beta)
        return (v * t - b).abs().sum(-1)

    def probe(self, beta, err):
        """Device tensor ``[out of range, drift of u, drift of v]`` since the last check."""
        bad = self.bad if err is None else self.bad | ~torch.isfinite(err).all()
        drift_v = _spread(beta - self.beta_abs, not self.all_cols)
        return torch.stack([bad.to(self.drift.dtype), self.drift, drift_v])

    def settle(self, values) -> bool:
        """Host side of :meth:`probe`: re-absorb after a drift; False (replay carefully) after a step out of range."""
        bad, drift_u, drift_v = values
        self._watch()
        if bad or not math.isfinite(drift_u + drift_v):
            self.careful, self.stale = True, True
            self._cache = self._rows_cache = (None, None)
            return False
        self.careful = False
        self.stale = self.stale or max(drift_u, drift_v) > self.threshold
        return True

    def relaxed(self, beta, omega):
        """The over-relaxed step (:mod:`otcls.ot.fixed_point`): rows then columns each move ``omega`` times
        their exact update; every ``a_i, b_j > 0``. While steps are replayed carefully, the plain step."""
        if self.careful:
            self.relaxed_alpha = None
            return self(beta)
        _, s = self._rows(beta)
        log_u = self.log_a - torch.log(s)  # absorbed units
        if self.relaxed_alpha is not None:
            log_u = torch.lerp(self.relaxed_alpha - self.alpha_abs, log_u, omega)
        self.relaxed_alpha = self.alpha_abs + log_u
        t = self.products.vecmat(torch.exp(log_u))
        beta_new = torch.lerp(beta, self.log_b - torch.log(t) + self.beta_abs, omega)
        self.bad = self.bad | ~torch.isfinite(beta_new).all()
        self.drift = torch.maximum(self.drift, _spread(log_u.detach(), False))
        return beta_new

    def __call__(self, beta):
        v, s, u, t = self._half_steps(beta)
        beta_new = self.log_b - torch.log(t) + self.beta_abs
        live = beta_new if self.all_cols else torch.where(self.cols, beta_new, torch.zeros_like(beta_new))
        if not self.careful:
            self.bad = self.bad | ~torch.isfinite(live).all()
            self.drift = torch.maximum(self.drift, _spread(torch.log(u.detach()), not self.all_rows))
        elif not bool(torch.isfinite(live).all()):
            # a row or column of K~ underflowed: take the exact step and re-absorb next time
            self.stale = True
            return self.log_b - col_lse(self.log_k, self.log_a - row_lse(self.log_k, beta))
        else:
            # row scalings drifted: re-absorb next step
            self.stale = float(_spread(torch.log(u.detach()), not self.all_rows)) > self.threshold
        return beta_new if self.all_cols else torch.where(self.cols, beta_new, self.log_b)


def _spread(x: torch.Tensor, exact_zeros: bool) -> torch.Tensor:
    """``max |x|`` over finite entries (a device scalar); ``exact_zeros``: some entries are ``±inf``
    (dead rows/columns)."""
    x = x.detach().abs()
    if exact_zeros:
        x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    return x.amax() if x.numel() else x.new_zeros(())


def _exp_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``exp(num - den)``, 0 where ``num = -inf`` (dead rows/columns)."""
    alive = num > -torch.inf
    return torch.where(alive, torch.exp(torch.where(alive, num - den, torch.zeros_like(num))), torch.zeros_like(num))


def sinkhorn_log(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000,
                 check_every: int = 10, grad: str = "autodiff", beta0: Optional[torch.Tensor] = None,
                 overrelax: bool = True) -> OTResult:
    """Log-domain (absorption-stabilised) Sinkhorn for U(a, b); ``error`` is ``|Pᵀ1 - b|_1 / sum(a)``.

    ``overrelax``: successive over-relaxation of both half-steps with an adaptive ``omega``
    (:mod:`otcls.ot.fixed_point`) where it changes no gradient (``tol`` set, no unrolled graph recorded by
    autograd) and every ``a_i, b_j > 0``."""
    log_a, log_b, _, _ = log_marginals(p)
    mass = p.a.sum(-1)
    threshold = 30.0 if p.cost.dtype in (torch.float32, torch.float16, torch.bfloat16) else 200.0
    step = _AbsorbedStep(p, log_a, log_b, threshold, log_k=p.log_kernel if p.needs_graph(grad) else None)

    def alpha_of(beta):
        return log_a - row_lse(step.log_k, beta)

    def exact_step(beta):
        return log_b - col_lse(step.log_k, alpha_of(beta))

    relax = overrelax and step.all_cols and step.all_rows and not p.records_graph(grad)

    def error(beta):
        err = step.column_error(beta, p.b) / mass
        # between careful steps the absorbed kernel may have underflowed: measure exactly then
        if not step.careful or bool(torch.isfinite(err).all()):
            return err
        return l1_violation(beta + col_lse(step.log_k, alpha_of(beta)), p.b) / mass

    beta0 = p.initial_beta() if beta0 is None else beta0
    trace = solve_fixed_point(step, beta0, error, tol=tol,
                              max_iter=max_iter, check_every=check_every, grad=grad, shift_invariant=True,
                              exact_step=exact_step, guard=step,
                              relaxed=step.relaxed if relax else None)
    warn_if_not_converged(trace, tol, max_iter, "sinkhorn_log", "column marginal")
    if grad == "detach" or not torch.is_grad_enabled():
        with torch.no_grad():
            alpha, plan = step.finalize(trace.z)
            return make_result(p, None, alpha, trace.z, trace, "sinkhorn_log", plan=plan)
    beta = trace.z
    return make_result(p, step.log_k, alpha_of(beta), beta, trace, "sinkhorn_log")


def sinkhorn(p: LinearProblem, *, tol: Optional[float] = 1e-6, max_iter: int = 1000,
             check_every: int = 10, grad: str = "autodiff", beta0: Optional[torch.Tensor] = None,
             overrelax: bool = True, out: Optional[torch.Tensor] = None,
             scratch: Optional[torch.Tensor] = None, fused: Optional[bool] = None) -> OTResult:
    """Scaling-domain Sinkhorn (matrix products with the row-shifted ``K``); raises if it under/overflows.

    Safe when :func:`otcls.ot.domain.scaling_safe` holds, which is when ``solve(method="auto")`` picks it.
    ``overrelax``: as in :func:`sinkhorn_log`. ``out``: a buffer of the cost's shape that receives the
    plan (it holds the kernel meanwhile), for a solve that builds no autograd graph; ``scratch``: likewise, a
    ``(B, m, n)`` buffer that holds ``Kᵀ`` (the chunks of a batch share one). ``fused``: ``None`` runs the
    fused C loop (:mod:`otcls.ot.fused`) where :func:`otcls.ot.fused.eligible` holds, ``False`` never,
    ``True`` raises where it cannot.
    """
    if fused is None:
        fused = fused_loop.eligible(p, grad)
    elif fused and not fused_loop.eligible(p, grad):
        raise ValueError("fused=True: the fused loop needs the C extension (otcls.ot.fused.available()), a CPU "
                         "float32/float64 problem without autograd graph, every a_i, b_j > 0 and a kernel of at "
                         f"most {fused_loop.CACHE_BYTES} bytes with its transpose; pass fused=None to fall back")
    if not fused and single.eligible(p, grad):
        alpha, beta, plan, trace = single.sinkhorn_single(
            p, tol=tol, max_iter=max_iter, check_every=check_every, grad=grad,
            beta0=p.initial_beta() if beta0 is None else beta0, overrelax=overrelax)
        return make_result(p, None, alpha, beta, trace, "sinkhorn", plan=plan)
    if fused:
        alpha, beta, plan, trace = fused_loop.sinkhorn_fused(
            p, tol=tol, max_iter=max_iter, check_every=check_every,
            beta0=p.initial_beta() if beta0 is None else beta0, overrelax=overrelax, out=out)
        _raise_if_out_of_range(trace, tol, max_iter)
        return make_result(p, None, alpha, beta, trace, "sinkhorn", plan=plan)
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        kernel = ScalingKernel(p, out, scratch)
    cols = p.b > 0
    all_cols = bool(cols.all())
    log_b = torch.where(cols, torch.log(torch.where(cols, p.b, torch.ones_like(p.b))), torch.full_like(p.b, -torch.inf))
    mass = p.a.sum(-1)

    def step(beta):
        _, _, t = kernel.half_steps(beta)
        if all_cols:
            return log_b - torch.log(t)
        return torch.where(cols, log_b - torch.log(torch.where(cols, t, torch.ones_like(t))), log_b)

    def error(beta):
        v, _, t = kernel.half_steps(beta)
        return (v * t - p.b).abs().sum(-1) / mass

    def relaxed(beta, omega):
        return torch.lerp(beta, log_b - torch.log(kernel.relaxed_column_sums(beta, omega)), omega)

    relax = overrelax and all_cols and kernel.all_rows and not p.records_graph(grad)
    beta0 = p.initial_beta() if beta0 is None else beta0
    trace = solve_fixed_point(step, beta0, error, tol=tol, max_iter=max_iter, check_every=check_every,
                              grad=grad, shift_invariant=True, relaxed=relaxed if relax else None)
    _raise_if_out_of_range(trace, tol, max_iter)
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        alpha, plan = kernel.plan(trace.z)
        return make_result(p, None, alpha, trace.z, trace, "sinkhorn", plan=plan)


def _raise_if_out_of_range(trace, tol, max_iter) -> None:
    warn_if_not_converged(trace, tol, max_iter, "sinkhorn", "column marginal")
    if not bool(torch.isfinite(trace.error).all()):
        raise FloatingPointError("scaling-domain Sinkhorn produced inf/NaN (eps too small for exp(-C/eps)); "
                                 "use method='sinkhorn_log' or 'auto'")
