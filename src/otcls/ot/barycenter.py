r"""Entropic (Bregman) barycenters of histograms on a shared grid, with an optional RE-OT prior.

Problem (Benamou et al. 2015; RE-OT paper Eq. 9):

    min_{p, P_1..P_S}  Σ_s λ_s · eps · KL~(P_s | K)   s.t.  P_sᵀ 1 = b_s,  P_s 1 = p  for all s

with ``K = Q ⊙ exp(-C/eps)``. Iterative Bregman projections alternate the column constraints
(``v_s = b_s / (Kᵀ u_s)``) and the shared row marginal, which is the weighted geometric mean of
the current row marginals: ``p = Π_s (u_s ⊙ K v_s)^{λ_s}``, ``u_s ← u_s ⊙ p / (u_s ⊙ K v_s)``.
Computed in the log domain.

Reference: J.-D. Benamou, G. Carlier, M. Cuturi, L. Nenna, G. Peyré, "Iterative Bregman
projections for regularized transportation problems", SIAM J. Sci. Comput. 2015.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .fixed_point import check_options, iterate, warn_if_not_converged
from .problem import _safe_log


@dataclass
class BarycenterResult:
    barycenter: torch.Tensor  # (d,) or (B, d)
    plans: torch.Tensor  # (S, d, d) or (B, S, d, d); rows sum to the barycenter, columns to b_s
    n_iter: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor
    errors: torch.Tensor


def barycenter(hists, cost, *, eps: float, weights=None, prior=None, tol: Optional[float] = 1e-7,
               max_iter: int = 2000, check_every: int = 10) -> BarycenterResult:
    """Bregman barycenter of ``hists`` (``(S, d)`` or batched ``(B, S, d)``) under ``cost`` (``(d, d)``).

    Args:
        hists: histograms ``>= 0`` with equal positive mass.
        cost: ground cost on the grid, ``(d, d)``, finite.
        eps: entropic regulariser ``> 0``.
        weights: ``λ_s >= 0`` summing to 1, ``(S,)`` (default uniform).
        prior: RE-OT prior ``Q``, ``(d, d)`` shared or ``(S, d, d)`` per histogram (``>= 0``).
        tol: stop when ``Σ_s λ_s |P_s 1 - p|_1 / mass <= tol``; None runs ``max_iter`` steps.
    """
    check_options(tol, max_iter, check_every, "autodiff")
    hists = torch.as_tensor(hists)
    if not hists.is_floating_point():
        hists = hists.to(torch.get_default_dtype())
    batched = hists.dim() == 3
    if hists.dim() not in (2, 3):
        raise ValueError(f"hists must be (S, d) or (B, S, d), got shape {tuple(hists.shape)}")
    H = hists if batched else hists.unsqueeze(0)
    B, S, d = H.shape
    cost = torch.as_tensor(cost, dtype=H.dtype, device=H.device)
    if cost.shape != (d, d):
        raise ValueError(f"cost must be ({d}, {d}) to match histograms of length {d}, got {tuple(cost.shape)}")
    if not torch.isfinite(cost).all() or not torch.isfinite(H).all():
        raise ValueError("cost and hists must be finite")
    if (H < 0).any():
        raise ValueError("hists have negative entries; histograms must be >= 0")
    mass = H.sum(-1)
    if (mass <= 0).any() or not torch.allclose(mass, mass[..., :1].expand_as(mass), rtol=1e-5):
        raise ValueError(f"every histogram needs the same positive mass, got {mass.tolist()}")
    if not float(eps) > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    w = torch.full((S,), 1.0 / S, dtype=H.dtype, device=H.device) if weights is None else \
        torch.as_tensor(weights, dtype=H.dtype, device=H.device)
    if w.shape != (S,) or (w < 0).any() or not torch.isclose(w.sum(), w.new_tensor(1.0), atol=1e-6):
        raise ValueError(f"weights must be {S} non-negative numbers summing to 1, got {w.tolist()}")

    log_k = (-cost / eps).expand(S, d, d)
    if prior is not None:
        q = torch.as_tensor(prior, dtype=H.dtype, device=H.device)
        if q.shape not in ((d, d), (S, d, d)):
            raise ValueError(f"prior must be ({d}, {d}) or ({S}, {d}, {d}), got {tuple(q.shape)}")
        if not torch.isfinite(q).all() or (q < 0).any() or ((q > 0).sum(-1) == 0).any():
            raise ValueError("prior must be finite, >= 0, with a positive entry in every row")
        if (((q > 0).sum(-2) == 0).expand(B, S, d) & (H > 0)).any():
            raise ValueError("prior has an all-zero column j where a histogram has b_s[j] > 0: that mass "
                             "cannot be transported (give the histograms or the prior a positive floor)")
        log_k = log_k + _safe_log(q)
    log_k = log_k.unsqueeze(0)  # (1, S, d, d)
    log_b = _safe_log(H)  # (B, S, d)

    def parts(z):
        alpha = z.view(B, S, d)
        beta = log_b - torch.logsumexp(log_k + alpha[..., :, None], dim=-2)
        r = alpha + torch.logsumexp(log_k + beta[..., None, :], dim=-1)  # log row marginals
        r = torch.where(torch.isnan(r), torch.full_like(r, -torch.inf), r)
        log_p = (w[None, :, None] * torch.where(torch.isfinite(r), r, torch.full_like(r, -1e30))).sum(1)
        return alpha, beta, r, log_p

    def step(z):
        alpha, _, r, log_p = parts(z)
        new = alpha + log_p[:, None, :] - r
        return torch.where(torch.isfinite(new), new, torch.full_like(new, -torch.inf)).reshape(B, S * d)

    def error(z):
        _, _, r, log_p = parts(z)
        return (w[None, :, None] * (r.exp() - log_p.exp()[:, None, :]).abs()).sum((1, 2)) / mass[:, 0]

    trace = iterate(step, torch.zeros(B, S * d, dtype=H.dtype, device=H.device), error,
                    tol=tol, max_iter=int(max_iter), check_every=int(check_every))
    warn_if_not_converged(trace, tol, max_iter, "barycenter", "row-marginal agreement")
    alpha, beta, _, log_p = parts(trace.z)
    plans = torch.exp(log_k + alpha[..., :, None] + beta[..., None, :])
    p = log_p.exp()
    if not batched:
        return BarycenterResult(p[0], plans[0], trace.n_iter[0], trace.error[0], trace.converged[0],
                                trace.errors[:, 0])
    return BarycenterResult(p, plans, trace.n_iter, trace.error, trace.converged, trace.errors)
