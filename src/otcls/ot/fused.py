"""Fused CPU Sinkhorn for batches of small balanced problems (the C extension ``otcls.ot._fused_sinkhorn``).

A classification batch (256 problems of 512×100) is hundreds of small problems. Solved with batched
PyTorch operations, each iteration of a chunk is ~15 operator calls plus two batched matrix products whose
kernels come from the shared L3 cache; the fused loop instead takes one problem per thread at a time and
runs all of its iterations on a kernel held, with its transpose, in the core's own cache: per iteration one
pass over each, no operator dispatch, and the column error of every iterate from the same pass (each problem
stops at the first iterate within ``tol``). The algorithm is :func:`otcls.ot.sinkhorn.sinkhorn`'s: the
row-shifted scaling-domain kernel, successive over-relaxation with Young's ``omega`` estimated from each
problem's own contraction rate (:mod:`otcls.ot.fixed_point`), the same fixed point and error.

It serves solves that build no autograd graph, on the CPU, in float32/float64, with every ``a_i, b_j > 0``
and a kernel pair that fits :data:`CACHE_BYTES` (:func:`eligible`); the rest, and every machine where the
extension did not compile (:func:`available`), take the PyTorch path.
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
from typing import Optional, Tuple

import torch

from . import buffers
from .fixed_point import Trace
from .problem import LinearProblem, _safe_log

# Bytes of K and Kᵀ (rows padded to 16 entries) per problem, at most: one core's L2 on the development
# machine is 1 MiB, and the problem's vectors and the other core's traffic need some of it.
CACHE_BYTES = 896 * 2 ** 10
PAD = 16


class _Job(ctypes.Structure):
    """``struct job`` of src/otcls/ot/native/fused_sinkhorn.c."""
    _fields_ = [(name, ctypes.c_int)
                for name in ("B", "n", "m", "max_iter", "check_every", "relax", "history_rows")] + \
               [("tol", ctypes.c_double)] + \
               [(name, ctypes.c_void_p) for name in ("cost", "log_prior", "eps", "a", "b",
                                                     "beta", "alpha", "plan", "error", "history")] + \
               [("n_iter", ctypes.POINTER(ctypes.c_int))]


def _load():
    try:
        from . import _fused_sinkhorn
    except ImportError:
        return None
    lib = ctypes.CDLL(_fused_sinkhorn.__file__)  # ctypes releases the GIL during the calls
    functions = {}
    for dtype, name in ((torch.float32, "fused_sinkhorn_f32"), (torch.float64, "fused_sinkhorn_f64")):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(_Job), ctypes.POINTER(ctypes.c_int)]
        fn.restype = ctypes.c_int
        functions[dtype] = fn
    return functions


_FUNCTIONS = _load()


def available() -> bool:
    """Whether the C extension was built (``pip install`` compiles it where a C compiler is found)."""
    return _FUNCTIONS is not None


def working_set(n: int, m: int, dtype: torch.dtype) -> int:
    """Bytes of the padded ``K`` and ``Kᵀ`` of one ``n × m`` problem."""
    def pad(k):
        return -(-k // PAD) * PAD
    return (n * pad(m) + m * pad(n)) * torch.finfo(dtype).bits // 8


def eligible(p: LinearProblem, grad: str) -> bool:
    """Whether the fused loop can solve ``p`` (see the module docstring)."""
    B, n, m = p.cost.shape
    return (available() and p.cost.device.type == "cpu" and p.cost.dtype in _FUNCTIONS and B > 0
            and not p.needs_graph(grad) and working_set(n, m, p.cost.dtype) <= CACHE_BYTES
            and max(B, n, m) < 2 ** 31 and bool((p.a > 0).all()) and bool((p.b > 0).all()))


def _threads(B: int) -> int:
    return max(1, min(B, torch.get_num_threads(), os.cpu_count() or 1))


def _run(fn, job: _Job, threads: int) -> None:
    """``threads`` calls of ``fn`` sharing the batch through one counter: the caller's thread and fresh helper
    threads (no pool kept across calls, so a forked DataLoader worker has nothing stale to wait on)."""
    counter = ctypes.c_int(0)
    codes = [0] * threads

    def work(k):
        codes[k] = fn(ctypes.byref(job), ctypes.byref(counter))

    helpers = [threading.Thread(target=work, args=(k,), name=f"otcls-fused-{k}") for k in range(1, threads)]
    for t in helpers:
        t.start()
    work(0)
    for t in helpers:
        t.join()
    if any(code != 0 for code in codes):
        raise MemoryError("fused Sinkhorn: could not allocate its per-thread work buffer")


def sinkhorn_fused(p: LinearProblem, *, tol: Optional[float], max_iter: int, check_every: int,
                   beta0: torch.Tensor, overrelax: bool,
                   out: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Trace]:
    """``(alpha, beta, plan, trace)`` of balanced Sinkhorn on an :func:`eligible` problem.

    ``trace.errors`` has a row per ``check_every`` iterations (the error of the iterate after ``(r+1) ·
    check_every`` updates; a problem that stopped earlier repeats its final error), like the convergence
    checks of the PyTorch path. ``tol=None``: exactly ``max_iter`` plain updates. ``out``: the plan's buffer."""
    B, n, m = p.cost.shape
    dtype = p.cost.dtype

    def owned(x):
        return x.detach().contiguous()

    cost, a, b = owned(p.cost), owned(p.a), owned(p.b)
    eps = owned(p.eps.reshape(B).to(dtype))
    log_prior = None if p.prior is None else owned(_safe_log(p.prior))
    beta = beta0.detach().to(dtype).clone().contiguous()
    alpha = torch.empty(B, n, dtype=dtype)
    plan = buffers.empty((B, n, m), dtype, p.cost.device) if out is None else out
    if not plan.is_contiguous() or plan.shape != (B, n, m):
        raise ValueError(f"out must be a contiguous {(B, n, m)} buffer")
    error = torch.empty(B, dtype=dtype)
    rows = max(1, math.ceil(max_iter / check_every))
    history = torch.empty(rows, B, dtype=dtype)
    n_iter = torch.empty(B, dtype=torch.int32)
    job = _Job(B=B, n=n, m=m, max_iter=int(max_iter), check_every=int(check_every),
               relax=int(bool(overrelax) and tol is not None), history_rows=rows,
               tol=-1.0 if tol is None else float(tol),
               cost=cost.data_ptr(), log_prior=None if log_prior is None else log_prior.data_ptr(),
               eps=eps.data_ptr(), a=a.data_ptr(), b=b.data_ptr(), beta=beta.data_ptr(), alpha=alpha.data_ptr(),
               plan=plan.data_ptr(), error=error.data_ptr(), history=history.data_ptr(),
               n_iter=ctypes.cast(n_iter.data_ptr(), ctypes.POINTER(ctypes.c_int)))
    _run(_FUNCTIONS[dtype], job, _threads(B))
    n_iter = n_iter.long()
    # rows past a problem's stop (and rows it never reached) repeat its final error
    used = max(1, math.ceil(int(n_iter.max()) / check_every))
    recorded = torch.arange(used)[:, None] < (n_iter // check_every)[None, :]
    errors = torch.where(recorded, history[:used], error[None, :])
    converged = error <= tol if tol is not None else torch.isfinite(error)
    return alpha, beta, plan, Trace(beta, n_iter, error, converged, errors)
