"""One small balanced problem with a gradient: the solve inside a training loss (one batch of logits).

A training step solves one ``n × m`` problem (a batch of 512 samples against 100 classes, say) and
backpropagates through its plan. At that size each Sinkhorn iteration is two mat-vecs of a few
microseconds, so the generic path's cost is elsewhere: PyTorch's autograd records every operation of the
unrolled iterations, and its backward of each mat-vec ``K v`` forms the outer product ``ḡ vᵀ`` — two full
``n × m`` passes per iteration, where the forward pass makes two mat-vecs — and ``grad="implicit"``
solves its adjoint equation by as many iterations again. Here one :class:`torch.autograd.Function`
holds the whole solve:

* forward: the iterations of :func:`otcls.ot.sinkhorn.sinkhorn` (row-shifted scaling-domain kernel, the same
  convergence schedule of :func:`otcls.ot.fixed_point.iterate`, over-relaxation where that function uses
  it) on 2-D tensors, without autograd; with ``grad="autodiff"`` it keeps the scalings ``u_k``, ``v_k`` of
  every iterate (``(n + m)`` numbers per iteration, as autograd would);
* ``grad="autodiff"`` backward: the reverse-mode derivative of those unrolled plain iterations, written
  out: per iteration two mat-vecs, and the kernel's gradient, a sum of two rank-one terms per iteration,
  as one matrix product of the stacked vectors at the end;
* ``grad="implicit"`` backward: the derivative of the fixed point, from the ``m × m`` linear system of the
  column constraint (``S = diag(Pᵀ1) - Pᵀ diag(1/a) P``, singular along ``1``; made definite by ``τ 11ᵀ``
  and solved by Cholesky in float64), so no adjoint iteration runs. The potentials' gauge is the one of
  :func:`otcls.ot.fixed_point.solve_fixed_point` (the column potential's mean held fixed).

A backward asked to build a graph (``create_graph=True``: second derivatives) solves the problem again by
the generic path and differentiates that, so higher derivatives are those of the generic path. Where :func:`eligible` fails (a batch, a
large problem, an input other than the cost that requires grad, a zero marginal entry) the generic path
runs. ``ENABLED = False`` turns this path off (tests compare the two).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Optional

import torch

from .fixed_point import solve_fixed_point, warn_if_not_converged
from .problem import LinearProblem
from .scaling import row_shifted_kernel

ENABLED = True
_state = threading.local()  # .generic: this thread is re-solving by the generic path (a differentiable backward)
MAX_ENTRIES = 2 ** 20  # n·m at most: beyond it the mat-vecs, not the per-operation overhead, set the time
MAX_IMPLICIT_COLS = 256  # m at most for the direct m×m solve (its n·m² product must stay below the iterations' cost)


def eligible(p: LinearProblem, grad: str) -> bool:
    """Whether :func:`sinkhorn_single` solves ``p`` (see the module docstring)."""
    B, n, m = p.cost.shape
    if not (ENABLED and not getattr(_state, "generic", False) and grad in ("autodiff", "implicit") and torch.is_grad_enabled() and B == 1
            and p.cost.dtype in (torch.float32, torch.float64) and n * m <= MAX_ENTRIES
            and p.cost.requires_grad and (grad == "autodiff" or m <= MAX_IMPLICIT_COLS)):
        return False
    if any(x is not None and x.requires_grad for x in (p.a, p.b, p.eps, p.prior)):
        return False
    return bool((p.a > 0).all()) and bool((p.b > 0).all())


class _Iteration:
    """``sinkhorn``'s steps on ``beta = log v`` ``(1, m)`` with one 2-D kernel (plain and over-relaxed), the
    half-steps cached by identity of the state (a check and the step after it share their mat-vecs)."""

    def __init__(self, K: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
        self.K, self.KT = K, K.t().contiguous()
        self.a, self.b = a, b
        self.log_a, self.log_b = torch.log(a), torch.log(b)
        self.mass = a.sum()
        self._rows_cache = self._cache = (None, None)
        self._log_u = None

    def rows(self, beta):
        if self._rows_cache[0] is beta:
            return self._rows_cache[1]
        v = torch.exp(beta[0])
        out = (v, torch.mv(self.K, v))
        self._rows_cache = (beta, out)
        return out

    def half_steps(self, beta):
        """``v = e^beta``, ``u = a / (K v)``, ``t = Kᵀ u``."""
        if self._cache[0] is beta:
            return self._cache[1]
        v, s = self.rows(beta)
        u = self.a / s
        out = (v, u, torch.mv(self.KT, u))
        self._cache = (beta, out)
        return out

    def step(self, beta):
        _, _, t = self.half_steps(beta)
        return (self.log_b - torch.log(t)).unsqueeze(0)

    def error(self, beta):
        v, _, t = self.half_steps(beta)
        return ((v * t - self.b).abs().sum() / self.mass).reshape(1)

    def relaxed(self, beta, omega):
        """As :meth:`otcls.ot.scaling.ScalingKernel.relaxed_column_sums` and the step of ``sinkhorn``."""
        _, s = self.rows(beta)
        w = omega[0]
        log_u = self.log_a - torch.log(s)
        if self._log_u is not None:
            log_u = torch.lerp(self._log_u, log_u, w)
        self._log_u = log_u
        t = torch.mv(self.KT, torch.exp(log_u))
        return torch.lerp(beta, (self.log_b - torch.log(t)).unsqueeze(0), w)


class _Unrolled:
    """Plain Sinkhorn steps on the scaling ``v`` ``(1, m)`` (the state ``beta = log v`` of ``sinkhorn``, without
    its ``exp`` and ``log`` per step): ``u = 1 / ((K / a) v)``, ``t = Kᵀ u``, ``v <- b / t``, as row vectors
    times stored matrices (four operations per step), recording ``(u_k, v_k)`` of every step."""

    def __init__(self, K: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
        self.K = K
        self.KaT = (K / a[:, None]).t().contiguous()
        self.b = b[None, :]
        self.mass = a.sum()
        self.vs, self.us = [], []
        self._cache = (None, None)

    def half_steps(self, v):
        if self._cache[0] is v:
            return self._cache[1]
        u = torch.mm(v, self.KaT).reciprocal_()
        out = (u, torch.mm(u, self.K))
        self._cache = (v, out)
        return out

    def step(self, v):
        u, t = self.half_steps(v)
        self.vs.append(v)
        self.us.append(u)
        return self.b / t

    def error(self, v):
        _, t = self.half_steps(v)
        return ((v * t - self.b).abs().sum() / self.mass).reshape(1)


class _Solve(torch.autograd.Function):
    """``(plan, alpha, beta)`` of one balanced problem; the gradient reaches ``cost`` only."""

    @staticmethod
    def forward(ctx, cost, p, options, out):
        grad = options["grad"]
        K, shift = row_shifted_kernel(p)
        K = K[0]
        a, b = p.a[0].detach(), p.b[0].detach()
        run = dict(tol=options["tol"], max_iter=options["max_iter"], check_every=options["check_every"], grad="detach")
        ctx.grad, ctx.problem, ctx.options = grad, p, options
        ctx.eps = float(p.eps[0, 0])
        if grad == "autodiff":
            it = _Unrolled(K, a, b)
            trace = solve_fixed_point(it.step, options["beta0"].detach().exp(), it.error, **run)
            out["trace"] = trace
            if not bool(torch.isfinite(trace.error).all()):
                return None, None, None  # the caller raises (as sinkhorn does), before anything backpropagates
            v = trace.z
            u, _ = it.half_steps(v)
            plan = u.t() * K * v
            ctx.save_for_backward(K, it.KaT, plan, torch.cat(it.us + [u]), torch.cat(it.vs + [v]), a, b)
            return plan.unsqueeze(0), torch.log(u) - shift, torch.log(v)
        it = _Iteration(K, a, b)
        trace = solve_fixed_point(it.step, options["beta0"].detach(), it.error, **run,
                                  relaxed=it.relaxed if options["overrelax"] else None)
        out["trace"] = trace
        if not bool(torch.isfinite(trace.error).all()):
            return None, None, None
        beta = it.step(trace.z)  # as solve_fixed_point's implicit mode: the output is one step past z*
        v, u, _ = it.half_steps(beta)
        plan = K.mul_(u[:, None]).mul_(v[None, :])  # K is not needed any more
        ctx.save_for_backward(plan, a)
        return plan.unsqueeze(0), (torch.log(u) - shift[0]).unsqueeze(0), beta

    @staticmethod
    def backward(ctx, g_plan, g_alpha, g_beta):
        if torch.is_grad_enabled():
            return _backward_with_graph(ctx, g_plan, g_alpha, g_beta)
        if ctx.grad == "autodiff":
            gk = _unrolled_backward(*ctx.saved_tensors, g_plan[0], g_alpha[0], g_beta[0])
        else:
            gk = _implicit_backward(*ctx.saved_tensors, g_plan[0], g_alpha[0], g_beta[0])
        return gk.div_(-ctx.eps).unsqueeze(0), None, None, None


def _backward_with_graph(ctx, g_plan, g_alpha, g_beta):
    """A backward that is itself differentiable (``create_graph=True``, e.g. a second derivative): the hand-written
    adjoints above are first-order only, so the problem is solved again by the generic path, whose autograd graph
    gives the same first derivative and the higher ones."""
    from .sinkhorn import sinkhorn

    p, o = ctx.problem, ctx.options
    p = dataclasses.replace(p, cost=p.cost, batched=True)
    _state.generic = True
    try:
        res = sinkhorn(p, tol=o["tol"], max_iter=o["max_iter"], check_every=o["check_every"], grad=ctx.grad,
                       beta0=o["beta0"], overrelax=o["overrelax"], fused=False)
    finally:
        _state.generic = False
    outputs = (res.plan, res.f / p.eps, res.g / p.eps)
    grad, = torch.autograd.grad(outputs, p.cost, (g_plan, g_alpha, g_beta), create_graph=True)
    return grad, None, None, None


def _unrolled_backward(K, KaT, plan, U, V, a, b, g_plan, g_alpha, g_beta):
    """``dL/dlog K`` through the recorded plain steps ``u_k = a / (K v_k)``, ``t_k = Kᵀ u_k``, ``v_{k+1} = b / t_k``
    and the outputs ``P = u_N K v_N``, ``alpha = log u_N - shift``, ``beta = log v_N``; ``U``, ``V``: ``u_k``, ``v_k``
    for ``k = 0..N`` (rows). ``KaT = (K / a)ᵀ``. Row vectors times the stored matrices, as in the forward pass."""
    N = U.shape[0] - 1
    n, m = K.shape
    # dL/dK = Lᵀ R + g_plan ⊙ u_N v_Nᵀ: L = [u_0..u_{N-1}, s̄_N..s̄_0], R = [t̄_0..t̄_{N-1}, v_N..v_0]
    L = torch.empty(2 * N + 1, n, dtype=K.dtype, device=K.device)
    R = torch.empty(2 * N + 1, m, dtype=K.dtype, device=K.device)
    L[:N] = U[:N]
    R[N:] = V.flip(0)
    minus_u2 = (U * U).neg_()  # ds_k from du_k: u = a / s, du/ds = -u² / a (the 1/a is in KaT)
    minus_v2_b = (V * V).div_(b).neg_()  # dt_{k-1} from dv_k: v_k = b / t_{k-1}, dv/dt = -v² / b
    Ls, Rs, NU, W = L.split(1), R.split(1), minus_u2.split(1), minus_v2_b.split(1)
    u, v = U[N], V[N]
    gpk = g_plan * K
    g_u = torch.mv(gpk, v).add_(g_alpha / u).div_(a)
    s_bar = torch.mul(g_u[None, :], NU[N], out=Ls[N])
    g_v = torch.mm(s_bar, K)[0].add_(torch.mv(gpk.t(), u))
    if N:
        torch.mul(g_v, v, out=Rs[N - 1][0]).add_(g_beta).mul_(v).div_(b).neg_()
    for k in range(N - 1, -1, -1):
        s_bar = torch.mul(torch.mm(Rs[k], KaT), NU[k], out=Ls[2 * N - k])
        if k:
            torch.mul(torch.mm(s_bar, K), W[k], out=Rs[k - 1])
    gk = torch.mm(L.t(), R)
    return gk.mul_(K).addcmul_(g_plan, plan)


def _implicit_backward(plan, a, g_plan, g_alpha, g_beta):
    """``dL/dlog K`` at the fixed point: with ``ρ = ((P ⊙ Ḡ)1 + ᾱ) / a`` and ``w = (P ⊙ Ḡ)ᵀ1 - Pᵀρ + β̄`` (the
    outputs' gradient with respect to ``beta`` with ``log K`` fixed), ``S y = w - mean(w)``, ``1ᵀy = 0``, and
    ``dL/dlog K = P ⊙ (Ḡ - ρ 1ᵀ + (P y / a) 1ᵀ - 1 yᵀ)``."""
    P = plan
    m = P.shape[1]
    pg = P * g_plan
    rho = (pg.sum(1) + g_alpha) / a
    w = pg.sum(0) - torch.mv(P.t(), rho) + g_beta
    w = w - w.mean()
    S = -torch.mm(P.t(), P / a[:, None]).double()
    cols = P.sum(0).double()
    S.diagonal().add_(cols)
    S.add_(float(cols.mean()) / m)  # τ 11ᵀ with τ m = mean column mass: S's scale on the direction 1
    factor, info = torch.linalg.cholesky_ex(S)
    rhs = w.double()[:, None]
    if int(info) == 0:
        y = torch.cholesky_solve(rhs, factor)[:, 0]
    else:  # not definite in rounding (a nearly disconnected plan): least squares
        y = torch.linalg.lstsq(S, rhs).solution[:, 0]
    y = (y - y.mean()).to(P.dtype)
    row = torch.mv(P, y).div_(a).sub_(rho)
    return pg.add_(P * (row[:, None] - y[None, :]))


def sinkhorn_single(p: LinearProblem, *, tol: Optional[float], max_iter: int, check_every: int, grad: str,
                    beta0: torch.Tensor, overrelax: bool):
    """``(alpha, beta, plan, trace)`` of an :func:`eligible` problem, batched ``(1, ...)``; raises
    ``FloatingPointError`` where the scaling iteration left its range (as :func:`otcls.ot.sinkhorn.sinkhorn`)."""
    out = {}
    options = dict(tol=tol, max_iter=max_iter, check_every=check_every, grad=grad, beta0=beta0,
                   overrelax=overrelax and tol is not None)
    plan, alpha, beta = _Solve.apply(p.cost, p, options, out)
    trace = out["trace"]
    warn_if_not_converged(trace, tol, max_iter, "sinkhorn", "column marginal")
    if plan is None or not math.isfinite(float(plan.detach().sum())):
        raise FloatingPointError("scaling-domain Sinkhorn produced inf/NaN (eps too small for exp(-C/eps)); "
                                 "use method='sinkhorn_log' or 'auto'")
    trace.z = beta
    return alpha, beta, plan, trace
