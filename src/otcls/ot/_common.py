"""Turn solver log-scalings into an :class:`OTResult`."""
from __future__ import annotations

from typing import Optional

import torch

from .fixed_point import Trace
from .problem import LinearProblem, _safe_log
from .result import OTResult


def log_marginals(p: LinearProblem):
    """``log a``, ``log b`` (or None), ``log lower`` (or None), ``log upper`` (or None)."""
    lb = _safe_log(p.b) if p.b is not None else None
    ll = _safe_log(p.lower) if p.lower is not None else None
    lu = _safe_log(p.upper) if p.upper is not None else None
    return _safe_log(p.a), lb, ll, lu


def make_result(p: LinearProblem, log_k: Optional[torch.Tensor], alpha: torch.Tensor, beta: torch.Tensor,
                trace: Trace, method: str, plan: Optional[torch.Tensor] = None) -> OTResult:
    """``plan``: pass it when the solver already has it (scaling form), else it is ``exp(log K + α + β)``."""
    if plan is None:
        plan = torch.exp(log_k + alpha[:, :, None] + beta[:, None, :])
    res = OTResult(plan=plan, f=p.eps * alpha, g=p.eps * beta, n_iter=trace.n_iter, error=trace.error,
                   converged=trace.converged, errors=trace.errors, method=method, cost=p.cost)
    return res if p.batched else unbatch(res)


def unbatch(res: OTResult) -> OTResult:
    """The single problem of a batch of one."""
    return OTResult(plan=res.plan[0], f=res.f[0], g=res.g[0], n_iter=res.n_iter[0], error=res.error[0],
                    converged=res.converged[0], errors=res.errors[:, 0], method=res.method, cost=res.cost[0])
