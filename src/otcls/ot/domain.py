"""Choosing between the scaling domain and the log domain, per problem, from cheap bounds.

With the row-shifted kernel ``K_ij = Q_ij exp(-(C_ij - min_j C_ij)/eps)`` (the shift is absorbed
by the row scaling ``u``, so the plan is unchanged) every row of ``K`` has largest entry 1 and
smallest positive entry ``exp(-R)``, where

    R = max_i [ max_j (log Q_ij - C_ij/eps) - min_{j: Q_ij > 0} (log Q_ij - C_ij/eps) ]

is the kernel's log-range. Along Sinkhorn's iterations the log-scalings ``log u``, ``log v`` each
spread over at most ``R`` plus the spread of the log-marginals (``g_j - g_j'`` is a soft-min
difference of cost columns, so it is bounded by the row range; the same for ``f``), and their
magnitudes add ``log max(n, m)`` from the sums. The scaling iteration ``u = a / (K v)``,
``v = b / (Kᵀ u)`` therefore stays finite and normal while

    R + spread(log a) + spread(log b) + log max(n, m)  <=  ½ log(1 / tiny(dtype))

(tiny: the smallest normal number; the bound is 43.7 in float32 and 354 in float64), leaving the
other half of the exponent range to the products. Past it the solvers take the log domain.
"""
from __future__ import annotations

import math
import torch

from .problem import LinearProblem


def safe_log_range(dtype: torch.dtype) -> float:
    """Half the exponent range below 1 of ``dtype``: ``½ log(1 / tiny)``."""
    return 0.5 * -math.log(torch.finfo(dtype).tiny)


def _spread(x: torch.Tensor) -> torch.Tensor:
    """``max log x - min log x`` over the positive finite entries of each row."""
    pos = (x > 0) & torch.isfinite(x)
    logx = torch.log(torch.where(pos, x, torch.ones_like(x)))
    hi = torch.where(pos, logx, torch.full_like(logx, -torch.inf)).amax(-1)
    lo = torch.where(pos, logx, torch.full_like(logx, torch.inf)).amin(-1)
    return torch.where(pos.any(-1), hi - lo, torch.zeros_like(hi))


def kernel_log_range(p: LinearProblem) -> torch.Tensor:
    """``R`` per problem (see the module docstring), ``(B,)``; one pass over the cost."""
    if p.prior is None:
        lo, hi = p.row_extremes()
        return (hi - lo).amax(-1) / p.eps[:, 0].detach()
    log_k = p.log_kernel.detach()
    alive = log_k > -torch.inf
    hi = log_k.amax(-1)
    lo = torch.where(alive, log_k, torch.full_like(log_k, torch.inf)).amin(-1)
    rows = torch.where(alive.any(-1), hi - lo, torch.zeros_like(hi))
    return rows.amax(-1)


def scaling_margin(p: LinearProblem) -> torch.Tensor:
    """``½ log(1/tiny) - R - spreads - log max(n, m)`` per problem; ``>= 0`` means the scaling domain is safe.

    For DB-OT the column spread is that of the bounds together (the column sums can be anywhere between).
    """
    n, m = p.cost.shape[-2:]
    bounds = [x.detach() for x in (p.b, p.lower, p.upper) if x is not None]
    cols = _spread(torch.cat(bounds, -1)) if bounds else p.a.new_zeros(())
    spreads = _spread(p.a.detach()) + cols
    return safe_log_range(p.cost.dtype) - kernel_log_range(p) - spreads - math.log(max(n, m))


def scaling_safe(p: LinearProblem) -> torch.Tensor:
    """``(B,)`` bool: the scaling iteration cannot under/overflow for this problem."""
    return scaling_margin(p) >= 0
