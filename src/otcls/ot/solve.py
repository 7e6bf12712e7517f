"""One entry point for every linear OT problem in otcls."""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional

import torch

from . import buffers
from .chunking import chunk_size as auto_chunk_size
from .chunking import concat, subproblem
from .dbot import dbot_ascent, dbot_ascent_scaling, dbot_cyclic, dbot_dykstra, dbot_three_scaling
from .domain import scaling_safe
from . import fused as fused_loop
from .fixed_point import check_options
from .problem import LinearProblem
from .result import OTNumericalError, OTResult
from .semi_relaxed import semi_relaxed
from .sinkhorn import sinkhorn, sinkhorn_log

SOLVERS: Dict[str, Dict[str, Callable[..., OTResult]]] = {
    "balanced": {"sinkhorn_log": sinkhorn_log, "sinkhorn": sinkhorn},
    "bounded": {"dbot_ascent": dbot_ascent, "dbot_ascent_scaling": dbot_ascent_scaling,
                "dbot_three_scaling": dbot_three_scaling, "dbot_dykstra": dbot_dykstra, "dbot_cyclic": dbot_cyclic},
    "semi_relaxed": {"semi_relaxed": semi_relaxed},
}
# method="auto": (scaling domain where it is safe, log domain elsewhere)
AUTO_METHODS = {"balanced": ("sinkhorn", "sinkhorn_log"), "bounded": ("dbot_ascent_scaling", "dbot_ascent"),
                "semi_relaxed": ("semi_relaxed", "semi_relaxed")}
IN_PLACE = ("sinkhorn", "dbot_ascent_scaling")  # solvers that can build their plan in a given buffer


def solve(cost, a, b=None, *, eps, prior=None, lower=None, upper=None, method: str = "auto",
          tol: Optional[float] = 1e-6, max_iter: int = 1000, grad: str = "autodiff",
          check_every: int = 10, init_g=None, chunk_size: Optional[int] = None,
          overrelax: bool = True, fused: Optional[bool] = None) -> OTResult:
    r"""Solve entropic OT, RE-OT or DB-OT, batched and differentiable.

    .. math::
        \min_P \langle C, P\rangle + \varepsilon\,\mathrm{KL}^\sim(P \,|\, Q)
        \quad\text{s.t.}\quad P\mathbf 1 = a,\ \begin{cases}
        P^\top\mathbf 1 = b & \text{if } b \text{ is given (balanced)}\\
        l \le P^\top\mathbf 1 \le u & \text{if lower/upper are given (DB-OT)}\\
        \text{nothing} & \text{otherwise (semi-relaxed, closed form)}\end{cases}

    ``Q = 1`` when ``prior`` is None (plain entropic OT).

    Args:
        cost: ``(n, m)`` or ``(B, n, m)``; finite.
        a: row marginal ``(n,)`` or ``(B, n)``; ``>= 0`` with positive sum.
        b: column marginal (balanced OT); ``sum(b) == sum(a)``.
        eps: regulariser ``> 0``; float or ``(B,)`` tensor.
        prior: RE-OT prior ``Q`` ``(n, m)`` or ``(B, n, m)``, ``>= 0``.
        lower, upper: DB-OT column bounds ``(m,)`` or ``(B, m)``; either may be None (0 / +inf).
        method: ``"auto"`` or a solver name: ``sinkhorn_log``, ``sinkhorn`` (balanced);
            ``dbot_ascent``, ``dbot_ascent_scaling``, ``dbot_three_scaling``, ``dbot_dykstra``,
            ``dbot_cyclic`` (bounded; the last is not optimal); ``semi_relaxed``. ``"auto"`` takes,
            per problem, the scaling-domain solver (``sinkhorn``, ``dbot_ascent_scaling``) when the
            kernel's range keeps its iteration finite in this dtype (:mod:`otcls.ot.domain`), else
            the log-domain one (``sinkhorn_log``, ``dbot_ascent``); ``result.method`` names the
            choice (``"a+b"`` when a batch used both).
        tol: stop a problem when its relative marginal/bound violation is ``<= tol``; ``None``
            runs exactly ``max_iter`` iterations (e.g. a fixed-``k`` loss) without warning.
        max_iter: iteration cap; hitting it with ``tol`` set raises :class:`OTConvergenceWarning`.
        grad: ``"autodiff"`` (unrolled), ``"implicit"`` (implicit differentiation at the fixed
            point, memory of one iteration) or ``"detach"``.
        check_every: most iterations between two convergence checks of a problem (each check is one
            device synchronisation); a problem is checked earlier when the linear rate seen between
            its last two checks predicts ``tol`` sooner.
        init_g: warm start, column potentials ``g`` ``(m,)`` or ``(B, m)`` in cost units (e.g. the
            ``g`` of a previous result on a nearby problem); ignored by the closed form.
        chunk_size: problems solved together; each chunk iterates to its own convergence. Default:
            as many as keep their kernels in the CPU cache (:mod:`otcls.ot.chunking`); the whole
            batch on other devices.
        overrelax: balanced problems: successive over-relaxation (SOR) of Sinkhorn's row and column
            updates, each moved ``omega`` times as far as the exact update, with Young's optimal
            ``omega`` estimated from each problem's own contraction rate (same fixed point, fewer
            iterations; :mod:`otcls.ot.fixed_point`). Applied only where it cannot change a gradient:
            ``tol`` set, no unrolled graph recorded (``grad`` implicit or detach, autograd off, or no
            input requiring grad), and every ``a_i, b_j > 0``. ``False``: plain Sinkhorn steps.
        fused: balanced problems in the scaling domain: ``None`` solves batches of small CPU problems
            that build no autograd graph with the fused C loop (:mod:`otcls.ot.fused`: one problem per
            thread, held in the core's cache, checked at every iteration; the same algorithm and fixed
            point), ``False`` always with PyTorch operations, ``True`` raises where the fused loop cannot run.

    Returns:
        :class:`OTResult` (plan, potentials ``f``, ``g``, ``n_iter``, ``error``, ``converged``, ``errors``).

    Raises:
        ValueError: shapes that do not match, negative or non-finite inputs, ``eps <= 0``,
            unequal masses for balanced OT, infeasible bounds, unknown method.
        OTNumericalError: (a ``ValueError``) ``eps`` below the dtype's smallest normal number, ``max|C| / eps``
            beyond the dtype's precision (balanced and DB-OT), or a solve that ended with inf/NaN entries or
            rows off their marginal: raise ``eps``, scale the cost down, or use float64.
    """
    check_options(tol, max_iter, check_every, grad)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 (or None for automatic), got {chunk_size}")
    if not isinstance(overrelax, bool):
        raise ValueError(f"overrelax must be True or False, got {overrelax!r}")
    problem = LinearProblem.build(cost, a, b, eps=eps, prior=prior, lower=lower, upper=upper)
    kind = problem.kind
    if method != "auto" and method not in SOLVERS[kind]:
        raise ValueError(f"method {method!r} does not solve a {kind} problem; choose 'auto' or one of "
                         f"{sorted(SOLVERS[kind])}")
    B, n, m = problem.cost.shape
    beta0 = problem.initial_beta(init_g)
    options = dict(tol=tol, max_iter=int(max_iter), check_every=int(check_every), grad=grad)
    if kind == "balanced":
        options["overrelax"] = overrelax
    if fused and kind != "balanced":
        raise ValueError(f"fused=True applies to balanced problems (b given); this one is {kind}")
    if method == "auto" and kind != "semi_relaxed":
        scaling, log = AUTO_METHODS[kind]
        safe = scaling_safe(problem)
        groups = [(name, torch.nonzero(mask).flatten()) for name, mask in ((scaling, safe), (log, ~safe))]
        groups = [(name, idx) for name, idx in groups if len(idx)]
    else:
        groups = [(AUTO_METHODS[kind][0] if method == "auto" else method, None)]
    scaling_only = len(groups) == 1 and groups[0][0] == "sinkhorn"
    if fused and not scaling_only:
        raise ValueError("fused=True applies to the scaling-domain solver: use method='sinkhorn' (or 'auto' where "
                         "every problem of the batch is in its safe range)")
    if scaling_only and fused is not False and fused_loop.eligible(problem, grad):
        fused = True
    if chunk_size is not None:
        size = int(chunk_size)
    elif fused:
        size = B  # one problem per thread at a time: chunks would only add calls
    else:
        size = auto_chunk_size(n, m, problem.cost.dtype, problem.cost.device)

    def run(name: str, part: LinearProblem, beta: torch.Tensor, out=None, scratch=None) -> OTResult:
        """Solve ``part``; with ``out`` (no autograd graph), its plan ends up in ``out``, and ``scratch`` (the
        transposed shape) holds its ``Kᵀ`` meanwhile."""
        kw = dict(options, out=out, scratch=scratch) if out is not None and name in IN_PLACE else dict(options)
        if name == "sinkhorn" and fused is not None:
            kw["fused"] = fused
        if method != "auto" or name != AUTO_METHODS[kind][0]:
            result = SOLVERS[kind][name](part, beta0=beta, **kw)
        else:
            result = _scaling_or_log(kind, name, part, beta, kw, options)
        if out is not None and result.plan.data_ptr() != out.data_ptr():
            out.copy_(result.plan)
        return result

    if len(groups) == 1 and B <= size:
        result = run(groups[0][0], problem, beta0)
    elif len(groups) == 1:
        # chunks are slices: their plans are written straight into one buffer (no concatenation)
        out = scratch = None
        if not problem.needs_graph(grad):
            out = buffers.empty_like(problem.cost)
            scratch = buffers.empty((size, m, n), problem.cost.dtype, problem.cost.device)
        parts = [run(groups[0][0], subproblem(problem, slice(s, s + size)), beta0[s:s + size],
                     None if out is None else out[s:s + size], None if out is None else scratch[:min(size, B - s)])
                 for s in range(0, B, size)]
        result = concat(parts, None, problem, plan=out)
    else:
        parts, order = [], []
        for name, idx in groups:
            for chunk in idx.split(size):
                parts.append(run(name, subproblem(problem, chunk), beta0[chunk]))
                order.append(chunk)
        result = concat(parts, torch.cat(order), problem)
    if tol is not None and problem.prior is not None and problem.b is not None:
        _raise_if_prior_support_infeasible(problem, result)
    if not bool(result.converged.all()):
        _raise_if_plan_broken(problem, result, tol)
    return result


ROW_RTOL = 1e-2  # a row sum off by more than this fraction of the mass is rounding gone wrong, not slow progress


def _raise_if_plan_broken(problem: LinearProblem, result: OTResult, tol: Optional[float]) -> None:
    """After a solve that did not converge: raise if its plan has inf/NaN entries or misses the row marginal,
    which every solver enforces by its last update (so only a loss of precision moves it). A plan that is just
    not converged yet passes (with its :class:`OTConvergenceWarning`). Runs on failure only: converged solves
    pay nothing."""
    plan = result.plan.detach()
    plan = plan if plan.dim() == 3 else plan.unsqueeze(0)
    rows = plan.sum(-1)
    a = problem.a.detach()
    row_err = (rows - a).abs().sum(-1) / a.sum(-1)
    finite = torch.isfinite(row_err)
    if bool(finite.all()) and float(row_err.max()) <= ROW_RTOL and tol is not None:
        return
    if bool(finite.all()) and tol is None:
        return  # a fixed-iteration run (tol=None) whose error is NaN but whose plan is finite: as before
    k = int(torch.nonzero(~finite | (row_err > ROW_RTOL)).flatten()[0])
    what = "inf/NaN entries" if not bool(finite[k]) else f"row sums off by {float(row_err[k]):.1%} of the mass"
    dtype = problem.cost.dtype
    raise OTNumericalError(
        f"{result.method}: the plan of problem {k} of the batch has {what}: |C|/eps is too large for {dtype} "
        f"(max|C| = {float(problem.cost[k].detach().abs().amax()):.3g}, eps = {float(problem.eps[k, 0]):.3g}); "
        "raise eps, subtract each row's smallest cost from the cost (the plan is unchanged)"
        + ("" if dtype == torch.float64 else ", or use float64"))


def _scaling_or_log(kind: str, name: str, part: LinearProblem, beta: torch.Tensor, kw: dict,
                    options: dict) -> OTResult:
    """``method="auto"``'s scaling-domain solve of ``part``, handed to the log domain if it leaves the range.

    The range bound holds at the solution; iterates that diverge (e.g. a prior whose zeros admit no
    coupling) can still leave it. Then the log domain takes over and reports what is wrong, and the
    scaling attempt's own warnings (about NaN errors) are dropped.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = SOLVERS[kind][name](part, beta0=beta, **kw)
        except FloatingPointError:
            result = None
    if result is None:
        return SOLVERS[kind][AUTO_METHODS[kind][1]](part, beta0=beta, **options)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def _raise_if_prior_support_infeasible(problem: LinearProblem, result) -> None:
    """After a balanced RE-OT solve that did not converge: if the prior's zeros leave no coupling with the
    marginals (a transportation LP on the support of Q has no solution), say so — more iterations or a
    larger eps cannot help. Only checked on failure, so converged solves pay nothing."""
    converged = result.converged.reshape(-1)
    if bool(converged.all()) or not bool((problem.prior == 0).any()):
        return
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    k = int(torch.nonzero(~converged).flatten()[0])
    support = (problem.prior[k] > 0).cpu().numpy()
    rows, cols = np.nonzero(support)
    n, m = support.shape
    e = np.arange(len(rows))
    a_eq = vstack([coo_matrix((np.ones(len(e)), (rows, e)), shape=(n, len(e))),
                   coo_matrix((np.ones(len(e)), (cols, e)), shape=(m, len(e)))]).tocsr()
    b_eq = np.concatenate([problem.a[k].double().cpu().numpy(), problem.b[k].double().cpu().numpy()])
    lp = linprog(np.zeros(len(e)), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if lp.status == 2:
        raise ValueError(f"prior Q (problem {k} of the batch) is infeasible: no coupling with these row and column "
                         "marginals lives on the entries where Q > 0, so the solver cannot converge whatever "
                         "max_iter or eps; give the zero entries a small positive prior or change the marginals")
