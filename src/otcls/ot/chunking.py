"""Cache-blocked batches: solve a batch in chunks whose kernels stay in the CPU cache.

Each iteration reads every kernel of the batch twice. A whole classification batch (256 kernels of
512×100 in float32, 52 MB) streams from memory on every iteration; a chunk whose kernels fit in the
cache is read from it, and each chunk stops at its own convergence, so problems that converged early
stop costing work with their chunk. On CUDA the device wants the whole batch at once: no chunking.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from ._common import unbatch
from .problem import LinearProblem
from .result import OTResult

# Bytes of kernel (K and its transpose) per chunk: measured on the 2-core development machine
# (1 MiB L2 per core, 32 MiB shared L3), chunks of 4-16 MiB run at cache speed; larger ones slow down
# as they spill and the other processes' share of the L3 evicts them.
CACHE_BYTES = 8 * 2 ** 20


def chunk_size(n: int, m: int, dtype: torch.dtype, device: torch.device) -> int:
    """Problems per chunk: as many ``n × m`` kernels (stored twice) as fit in :data:`CACHE_BYTES`."""
    if device.type != "cpu":
        return 2 ** 62
    per_problem = 2 * n * m * torch.finfo(dtype).bits // 8
    return max(1, CACHE_BYTES // per_problem)


def subproblem(p: LinearProblem, idx) -> LinearProblem:
    """Problems ``idx`` (a slice: views; an index tensor: copies) of the batch, as a batched problem."""
    def take(x):
        return None if x is None else x[idx]
    rows = None if p.cost_rows is None else (p.cost_rows[0][idx], p.cost_rows[1][idx])
    return LinearProblem(cost=p.cost[idx], a=p.a[idx], eps=p.eps[idx], b=take(p.b), prior=take(p.prior),
                         lower=take(p.lower), upper=take(p.upper), batched=True, cost_rows=rows)


def concat(results: Sequence[OTResult], order: Optional[torch.Tensor], p: LinearProblem,
           plan: Optional[torch.Tensor] = None) -> OTResult:
    """One result from the results of the chunks ``order`` was split into (``order[k]``: the problem
    behind row ``k`` of the concatenation; None: in batch order). A chunk's convergence record is
    padded with its last check. ``plan``: the whole plan, when the chunks wrote theirs into it."""
    checks = max(r.errors.shape[0] for r in results)
    errors = [torch.cat([r.errors, r.errors[-1:].expand(checks - r.errors.shape[0], -1)]) for r in results]
    inverse = None
    if order is not None:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
    names: List[str] = []
    for r in results:
        if r.method not in names:
            names.append(r.method)

    def cat(xs, dim=0):
        out = torch.cat(list(xs), dim)
        return out if inverse is None else out.index_select(dim, inverse.to(out.device))

    res = OTResult(plan=cat([r.plan for r in results]) if plan is None else plan, f=cat([r.f for r in results]),
                   g=cat([r.g for r in results]), n_iter=cat([r.n_iter for r in results]),
                   error=cat([r.error for r in results]), converged=cat([r.converged for r in results]),
                   errors=cat(errors, 1), method="+".join(names), cost=p.cost)
    return res if p.batched else unbatch(res)
