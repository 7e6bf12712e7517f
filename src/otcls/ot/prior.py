"""RE-OT priors: Sinkhorn scaling of a prior, the proximal-point iteration, the deblurring prior."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .solve import solve


def scale_prior(prior, a, b, *, tol: float = 1e-9, max_iter: int = 10000) -> torch.Tensor:
    r"""``Q~ = diag(u) Q diag(v)``: the prior scaled onto ``U(a, b)``.

    It is the ``eps → ∞`` limit of the RE-OT plan (Sinkhorn with ``C = 0``), and RE-OT with ``Q``
    or with ``Q~`` gives the same plan (``P_Q = P_{Q~}``).
    """
    prior = torch.as_tensor(prior)
    if not prior.is_floating_point():
        prior = prior.to(torch.get_default_dtype())
    return solve(torch.zeros_like(prior), a, b, eps=1.0, prior=prior, tol=tol, max_iter=max_iter).plan


@dataclass
class ProximalPointResult:
    plans: torch.Tensor  # (T, ..., n, m): P(0), P(1), ...
    costs: torch.Tensor  # (T, ...): <C, P(t)>


def proximal_point(cost, a, b, *, eps: float, n_steps: int, prior=None, tol: float = 1e-9,
                   max_iter: int = 10000) -> ProximalPointResult:
    r"""Proximal-point iteration ``Q(t) = P^{eps}_{Q(t-1)}``, ``Q(0) = prior`` (default ``1``).

    Each step is one RE-OT solve whose prior is the previous plan; step ``t`` equals Sinkhorn with
    kernel ``Q(0) ⊙ exp(-(t+1) C / eps)``, i.e. entropic OT at ``eps / (t+1)``, so ``<C, P(t)>``
    decreases to the exact OT cost as ``t`` grows.
    """
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    plans, q = [], prior
    for _ in range(int(n_steps)):
        q = solve(cost, a, b, eps=eps, prior=q, tol=tol, max_iter=max_iter).plan
        plans.append(q)
    plans_t = torch.stack(plans)
    cost_t = torch.as_tensor(cost, dtype=plans_t.dtype)
    return ProximalPointResult(plans=plans_t, costs=(plans_t * cost_t).sum(dim=(-2, -1)))


def deblur_prior(b1, b2, cost, *, eps: float, lam: float, plan: Optional[torch.Tensor] = None,
                 tol: float = 1e-9, max_iter: int = 10000) -> torch.Tensor:
    r"""RE-OT paper Eq. 10: ``Q = (1 - λ) (P^eps)ᵀ + λ P^eps``.

    ``P^eps`` is the entropic plan from histogram ``b1`` (e.g. noise) to ``b2`` (an image) on the
    same grid (``cost`` is square); used as the prior of a two-histogram barycenter with weights
    ``(λ, 1 - λ)`` it removes the blur of entropic barycenters. Pass ``plan`` to reuse ``P^eps``.
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    cost = torch.as_tensor(cost)
    if cost.dim() != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"deblur_prior needs a square cost on one grid, got shape {tuple(cost.shape)}")
    if plan is None:
        plan = solve(cost, b1, b2, eps=eps, tol=tol, max_iter=max_iter).plan
    return (1.0 - lam) * plan.transpose(-2, -1) + lam * plan
