"""Semi-relaxed RE-OT: only the row marginal is constrained, and the plan has a closed form.

    min_{P 1 = a}  <C, P> + eps · KL~(P | Q)   ⇒   P_ij = a_i · softmax_j(log Q_ij - C_ij / eps)

With ``C = -logits``, ``eps = τ`` and ``a = 1/n`` this is the softmax of ``logits/τ + log Q``:
the source of every cross-entropy-type loss in :mod:`otcls.losses` (RE-OT paper, §3).
"""
from __future__ import annotations

import torch

from ._common import log_marginals, make_result
from .fixed_point import Trace
from .problem import LinearProblem
from .result import OTResult


def semi_relaxed(p: LinearProblem, *, grad: str = "autodiff", **_ignored) -> OTResult:
    """Closed form; ``n_iter = 0``, ``error = 0``, ``converged = True``."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and grad != "detach"):
        log_k = p.log_kernel
        log_a, _, _, _ = log_marginals(p)
        alpha = log_a - torch.logsumexp(log_k, dim=-1)
        beta = torch.zeros(p.cost.shape[0], p.cost.shape[-1], dtype=p.cost.dtype, device=p.cost.device)
        B = p.cost.shape[0]
        zero = torch.zeros(B, dtype=p.cost.dtype, device=p.cost.device)
        trace = Trace(z=beta, n_iter=torch.zeros(B, dtype=torch.long, device=p.cost.device), error=zero,
                      converged=torch.ones(B, dtype=torch.bool, device=p.cost.device), errors=zero[None])
        return make_result(p, log_k, alpha, beta, trace, "semi_relaxed")
