"""Semi-relaxed RE-OT: only the row marginal is constrained, and the plan has a closed form.

    min_{P 1 = a}  <C, P> + eps · KL~(P | Q)   ⇒   P_ij = a_i · softmax_j(log Q_ij - C_ij / eps)

With ``C = -logits``, ``eps = τ`` and ``a = 1/n`` this is the softmax of ``logits/τ + log Q``:
the source of every cross-entropy-type loss in :mod:`otcls.losses` (RE-OT paper, §3).
"""
from __future__ import annotations

import torch

from ._common import log_marginals, make_result
from .fixed_point import Trace
from .problem import LinearProblem, _safe_log
from .result import OTResult


def semi_relaxed(p: LinearProblem, *, grad: str = "autodiff", **_ignored) -> OTResult:
    """Closed form; ``n_iter = 0``, ``error = 0``, ``converged = True``.

    The exponent is taken relative to each row's smallest cost, ``(min_j C_ij - C_ij) / eps`` (the shift
    cancels in the softmax and is added back to ``f`` exactly), so rows sum to ``a_i`` at any ``eps``: the
    unshifted ``-C/eps`` would lose every digit to rounding once ``|C| / eps`` nears ``1 / dtype eps``."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        row_min = p.row_extremes()[0]  # detached: a shift the result does not depend on
        z = (row_min[:, :, None] - p.cost) / p.eps[:, :, None]
        if p.prior is not None:
            z = z + _safe_log(p.prior)
        log_a, _, _, _ = log_marginals(p)
        plan = torch.softmax(z, dim=-1) * p.a[:, :, None]
        alpha = log_a - torch.logsumexp(z, dim=-1) + row_min / p.eps
        beta = torch.zeros(p.cost.shape[0], p.cost.shape[-1], dtype=p.cost.dtype, device=p.cost.device)
        B = p.cost.shape[0]
        zero = torch.zeros(B, dtype=p.cost.dtype, device=p.cost.device)
        trace = Trace(z=beta, n_iter=torch.zeros(B, dtype=torch.long, device=p.cost.device), error=zero,
                      converged=torch.ones(B, dtype=torch.bool, device=p.cost.device), errors=zero[None])
        return make_result(p, None, alpha, beta, trace, "semi_relaxed", plan=plan)
