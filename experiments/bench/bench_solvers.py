"""Time otcls against its peers on the problems users have, in one run, with a lower bound per row.

Rows (ratio = peer time / otcls time, best of 5 each with the runs of the two alternated; > 1 means
otcls is faster):

* one 2000×2000 entropic OT problem (squared Euclidean between uniform 2-D points, scaled to max 1,
  tol 1e-6): eps 0.02 against POT's default ``ot.sinkhorn`` in float64 and float32, eps 0.005
  against POT's ``ot.sinkhorn(method="sinkhorn_log")``;
* a classification batch, 256 problems 512×100 (cost = row max-logit − logits, logits ~ N(0, 1.5²)
  plus 6 on a true class drawn from a long-tailed prior, eps 1, uniform rows, the prior as columns,
  float32) against a Python loop of ``ot.sinkhorn``, ``ot.batch.solve_batch`` and OTT-JAX's
  ``jit(vmap(Sinkhorn()))`` on CPU (skipped with a message when ott-jax is not installed);
* whole-test-set inference, 10,000×10 and 10,000×100 (eps 1): balanced OT with the prior against
  ``ot.sinkhorn``, and DB-OT with bounds 0.9–1.1 of the prior against otcls's own log-domain
  ``dbot_ascent`` (no other library solves DB-OT at this size);
* DB-OT at 512×100 against cvxpy + Clarabel (one run of cvxpy: it takes tens of seconds);
* DB-OT clustering of 20,000 points into 10 clusters against k-means-constrained with n_init=1, with
  where the clustering's time goes.

For each row: iterations of both, the plans' agreement (max |P - P_peer|, the L1 marginal error of
each relative to the mass) and a lower bound on otcls's time from this machine's measured memory
bandwidth, matmul and exp rates: the kernel's exponentials plus, per iteration, two passes over the
kernel (from cache when a chunk's kernels fit in it) or its two mat-vec flops, whichever is slower.
Writes results/bench/solvers.{md,json}. Run: ``make bench`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import ot as pot
import torch

from otcls.cluster import DBOTClustering
from otcls.ot import fused, solve
from otcls.ot.problem import LinearProblem
from otcls.ot.chunking import CACHE_BYTES, chunk_size

REPEATS = 5  # the VM's run-to-run spread is ±20 % and more: the best of 3 was often an unlucky one
SETTLE_S = 0.3
TARGETS = {"single-f64": 1.0, "single-f32": 1.5, "single-small-eps": 10.0, "batch-loop": 5.0, "batch-pot": 10.0,
           "batch-ott": 3.0, "cluster": 5.0, "cvxpy": 1000.0, "train-f64-autodiff": 1.5, "train-f64-implicit": 1.5,
           "train-f32-autodiff": 1.5, "train-f32-implicit": 1.5}


def timed(fn):
    """(wall time, result) of one run of ``fn``, started after :data:`SETTLE_S` idle seconds (see :func:`race`)."""
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn, repeats=REPEATS):
    """(best wall time over ``repeats`` runs, result of the last run)."""
    runs = [timed(fn) for _ in range(repeats)]
    return min(t for t, _ in runs), runs[-1][1]


def race(peer, ours, repeats=REPEATS):
    """``best_of`` for both, their runs alternated so that both see the same share of a busy machine.

    Each timed run starts after :data:`SETTLE_S` idle seconds: the BLAS behind NumPy (OpenBLAS) keeps its
    worker threads spinning for about 0.1 s after a call, and so does PyTorch's OpenMP pool for a
    shorter while, so a run that starts right after the other library's steals cores from its spinning
    threads (measured: up to 3× slower on 2 cores, for either library)."""
    best, out = [math.inf, math.inf], [None, None]
    for _ in range(repeats):
        for k, fn in enumerate((peer, ours)):
            t, out[k] = timed(fn)
            best[k] = min(best[k], t)
    return (best[0], out[0]), (best[1], out[1])


# ------------------------------------------------------------------------------------------ machine
def measure_machine():
    """Streaming and in-cache read bandwidth, GEMM and exp rates, measured now (best of 5)."""
    def rate(fn, work, repeats=5):
        fn()
        return work / best_of(fn, repeats)[0]

    big = torch.ones(2 ** 27, dtype=torch.float32)  # 512 MB
    small = torch.ones(CACHE_BYTES // 8, dtype=torch.float32)  # half the chunk budget
    out = {"stream_GBps": rate(lambda: big.sum(), big.numel() * 4) / 1e9,
           "cache_GBps": rate(lambda: [small.sum() for _ in range(50)], 50 * small.numel() * 4) / 1e9}
    for dtype, name in ((torch.float32, "f32"), (torch.float64, "f64")):
        A = torch.rand(2048, 2048, dtype=dtype)
        out[f"gemm_{name}_GFLOPs"] = rate(lambda: A @ A, 2 * 2048 ** 3) / 1e9
        x = torch.rand(2 ** 22, dtype=dtype)
        y = torch.empty_like(x)
        out[f"exp_{name}_Gps"] = rate(lambda: torch.exp(x, out=y), x.numel()) / 1e9
    return out


def lower_bound(machine, iters, B, n, m, dtype):
    """Seconds: ``B n m`` exponentials, then per iteration two reads of the kernels (from cache when a
    chunk fits in it) or ``4 B n m`` flops at the GEMM rate, whichever takes longer."""
    name = "f32" if dtype == torch.float32 else "f64"
    size = torch.finfo(dtype).bits // 8
    chunk = min(B, chunk_size(n, m, dtype, torch.device("cpu")))
    bw = machine["cache_GBps"] if 2 * chunk * n * m * size <= CACHE_BYTES else machine["stream_GBps"]
    per_iter = max(2 * B * n * m * size / (bw * 1e9), 4 * B * n * m / (machine[f"gemm_{name}_GFLOPs"] * 1e9))
    return B * n * m / (machine[f"exp_{name}_Gps"] * 1e9) + iters * per_iter


# ------------------------------------------------------------------------------------------ problems
def points_problem(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 2, generator=g, dtype=torch.float64), torch.rand(n, 2, generator=g, dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return (C / C.max()).to(dtype), a.to(dtype), a.to(dtype)


def long_tailed_prior(m, imbalance=100.0):
    p = imbalance ** (-torch.arange(m, dtype=torch.float64) / max(m - 1, 1))
    return p / p.sum()


def classification_problem(B, n, m, dtype, seed=0):
    """Cost ``max_k z_ik - z_ij`` of logits ``z ~ N(0, 1.5²)`` plus 6 on a true class drawn from the prior."""
    g = torch.Generator().manual_seed(seed)
    prior = long_tailed_prior(m)
    y = torch.multinomial(prior, B * n, replacement=True, generator=g).reshape(B, n)
    z = 1.5 * torch.randn(B, n, m, generator=g, dtype=torch.float64)
    z.scatter_add_(2, y[..., None], torch.full((B, n, 1), 6.0, dtype=torch.float64))
    C = z.amax(-1, keepdim=True) - z
    a = torch.full((B, n), 1.0 / n, dtype=torch.float64)
    return C.to(dtype), a.to(dtype), prior.expand(B, m).contiguous().to(dtype)


# ------------------------------------------------------------------------------------------ agreement
def marginal_error(P, a, b=None, lower=None, upper=None):
    """Worst L1 violation of the rows plus the columns (equality or bounds), relative to the mass."""
    P, a = np.asarray(P, dtype=np.float64), np.asarray(a, dtype=np.float64)
    err = np.abs(P.sum(-1) - a).sum(-1)
    col = P.sum(-2)
    if b is not None:
        err = err + np.abs(col - np.asarray(b, dtype=np.float64)).sum(-1)
    if lower is not None:
        err = err + np.clip(np.asarray(lower, dtype=np.float64) - col, 0, None).sum(-1)
        err = err + np.clip(col - np.asarray(upper, dtype=np.float64), 0, None).sum(-1)
    return float(np.max(err / a.sum(-1)))


def row(key, case, dtype, peer, t_peer, t_ours, it_peer, it_ours, dP, err_peer, err_ours, bound, method, note=""):
    target = TARGETS.get(key)
    ratio = t_peer / t_ours
    if target is None:
        status = ""
    elif math.isnan(ratio):
        status = "skipped: peer not run"
    else:
        status = "met" if ratio >= target else f"missed: ratio is {ratio / target:.0%} of the target"
    return dict(case=case, dtype=str(dtype).replace("torch.", ""), peer=peer, peer_s=t_peer, otcls_s=t_ours,
                ratio=ratio, target=target, status=status, peer_iters=it_peer, otcls_iters=it_ours,
                max_abs_dP=dP, peer_marginal_err=err_peer, otcls_marginal_err=err_ours, lower_bound_s=bound,
                otcls_method=method, note=note)


def iters_of(res):
    n = res.n_iter.double()
    return f"{n.mean():.1f} (max {int(n.max())})" if n.numel() > 1 else str(int(n))


# ------------------------------------------------------------------------------------------ rows
def single_rows(machine, n, rows):
    for key, dtype, eps, method in (("single-f64", torch.float64, 0.02, "sinkhorn"),
                                    ("single-f32", torch.float32, 0.02, "sinkhorn"),
                                    ("single-small-eps", torch.float64, 0.005, "sinkhorn_log")):
        C, a, b = points_problem(n, dtype)
        Cn, an, bn = C.numpy(), a.numpy(), b.numpy()
        (t_pot, (P_pot, log)), (t_us, res) = race(
            lambda: pot.sinkhorn(an, bn, Cn, eps, method=method, stopThr=1e-6, numItermax=100000, log=True),
            lambda: solve(C, a, b, eps=eps, tol=1e-6, max_iter=100000, grad="detach"))
        plain = solve(C, a, b, eps=eps, tol=1e-6, max_iter=100000, grad="detach", overrelax=False)
        rows.append(row(key, f"{n}×{n}, eps {eps}", dtype, f"POT ot.sinkhorn(method={method!r})", t_pot, t_us,
                        str(log["niter"]), iters_of(res), float(np.abs(res.plan.numpy() - P_pot).max()),
                        marginal_error(P_pot, an, bn), marginal_error(res.plan, an, bn),
                        lower_bound(machine, int(res.n_iter), 1, n, n, dtype), res.method,
                        "POT stops on the L2 norm of the column error, otcls on its L1 norm (stricter); "
                        f"otcls without over-relaxation: {iters_of(plain)} iterations"))


def batch_rows(machine, B, n, m, rows):
    dtype = torch.float32
    C, a, b = classification_problem(B, n, m, dtype)
    Cn, an, bn = C.numpy(), a.numpy(), b.numpy()
    def ours():
        return solve(C, a, b, eps=1.0, tol=1e-6, max_iter=10000, grad="detach")
    res = ours()
    bound = lower_bound(machine, float(res.n_iter.double().mean()), B, n, m, dtype)
    case = f"{B} × {n}×{m}, eps 1"
    plain = solve(C, a, b, eps=1.0, tol=1e-6, max_iter=10000, grad="detach", overrelax=False)
    plain_note = f"otcls without over-relaxation: {iters_of(plain)} iterations"
    if fused.eligible(LinearProblem.build(C, a, b, eps=1.0), "detach"):
        t_torch, _ = best_of(lambda: solve(C, a, b, eps=1.0, tol=1e-6, max_iter=10000, grad="detach", fused=False))
        plain_note += f"; otcls ran its fused C loop, its PyTorch path (fused=False) takes {t_torch:.3f} s"
    else:
        plain_note += "; the fused C loop did not run (otcls.ot.fused.available() is False): PyTorch path"
    err_us = marginal_error(res.plan, an, bn)

    def loop():
        out = [pot.sinkhorn(an[k], bn[k], Cn[k], 1.0, stopThr=1e-6, numItermax=10000, log=True) for k in range(B)]
        return np.stack([p for p, _ in out]), [lg["niter"] for _, lg in out]
    (t_loop, (P_loop, its)), (t_us, res) = race(loop, ours)
    rows.append(row("batch-loop", case, dtype, "Python loop of POT ot.sinkhorn", t_loop, t_us,
                    f"{np.mean(its):.1f} (max {max(its)})", iters_of(res),
                    float(np.abs(res.plan.numpy() - P_loop).max()),
                    marginal_error(P_loop, an, bn), err_us, bound, res.method, plain_note))

    (t_batch, out), (t_us, res) = race(
        lambda: pot.batch.solve_batch(Cn, 1.0, an, bn, max_iter=10000, tol=1e-6, grad="detach"), ours)
    rows.append(row("batch-pot", case, dtype, "POT ot.batch.solve_batch", t_batch, t_us, str(out.log["n_iter"]),
                    iters_of(res), float(np.abs(res.plan.numpy() - out.plan).max()), marginal_error(out.plan, an, bn),
                    err_us, bound, res.method))

    try:
        import jax
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn as ott_sinkhorn
    except ImportError:
        print("OTT-JAX row skipped: ott-jax is not installed (pip install -e '.[bench]')", flush=True)
        rows.append(row("batch-ott", case, dtype, "OTT-JAX (not installed: row skipped)", math.nan, t_us, "", "",
                        math.nan, math.nan, err_us, bound, res.method, "pip install -e '.[bench]' to run it"))
        return

    def one(c, x, y):
        geom = geometry.Geometry(cost_matrix=c, epsilon=1.0)
        out = ott_sinkhorn.Sinkhorn(threshold=1e-6, max_iterations=10000)(linear_problem.LinearProblem(geom, x, y))
        return out.matrix, out.n_iters

    run = jax.jit(jax.vmap(one))
    t0 = time.perf_counter()
    jax.block_until_ready(run(Cn, an, bn))
    compile_s = time.perf_counter() - t0
    (t_ott, (P_ott, its)), (t_us, res) = race(lambda: jax.block_until_ready(run(Cn, an, bn)), ours)
    P_ott, its = np.asarray(P_ott), np.asarray(its)
    rows.append(row("batch-ott", case, dtype, f"OTT-JAX {_version('ott-jax')} jit(vmap(Sinkhorn())), CPU", t_ott, t_us,
                    f"{its.mean():.1f} (max {its.max()})", iters_of(res), float(np.abs(res.plan.numpy() - P_ott).max()),
                    marginal_error(P_ott, an, bn), err_us, bound, res.method,
                    f"first call (compilation) {compile_s:.1f} s, not counted; OTT checks every 10 iterations"))


def training_rows(machine, n, m, rows):
    """One training step's solve: one n×m problem, cost = -logits, eps 1, uniform rows, the long-tailed prior as
    columns, forward and backward through the plan (loss <G, P>), against POT's ``ot.sinkhorn`` on torch tensors
    with autograd through its iterations. Timing at the training tolerance (POT's stopThr on the L2 column error,
    otcls's tol on the L1 one: the same number, otcls's test the stricter); gradients compared at a tight one."""
    C, a, b = classification_problem(1, n, m, torch.float64, seed=3)
    G = torch.randn(n, m, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def pot_step(z, a, b, G, tol, iters=100000):
        x = z.clone().requires_grad_()
        P, log = pot.sinkhorn(a, b, -x, 1.0, stopThr=tol, numItermax=iters, log=True, warn=False)
        (G * P).sum().backward()
        return x.grad, P.detach(), log["niter"]

    def our_step(z, a, b, G, tol, grad, iters=100000):
        x = z.clone().requires_grad_()
        res = solve(-x, a, b, eps=1.0, tol=tol, max_iter=iters, grad=grad)
        (G * res.plan).sum().backward()
        return x.grad, res

    def rel(x, y):
        return float((x.double() - y.double()).abs().max() / y.double().abs().max())

    z64 = C[0].max() - C[0]
    exact, _, _ = pot_step(z64, a[0], b[0], G, 1e-15)  # float64, converged far below any tolerance used here
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-6)):
        z, aa, bb, GG = (t.to(dtype) for t in (z64, a[0], b[0], G))
        name = "f64" if dtype == torch.float64 else "f32"
        for grad in ("autodiff", "implicit"):
            (t_pot, (g_pot, P_pot, it_pot)), (t_us, (g_us, res)) = race(
                lambda: pot_step(z, aa, bb, GG, tol), lambda: our_step(z, aa, bb, GG, tol, grad))
            # tight agreement with POT in the same dtype: float64 both converged; float32 autodiff: the same
            # number of unrolled iterations (its derivative lags the iterate); float32 implicit at tol 2e-7
            if dtype == torch.float64:
                g_a, _, _ = pot_step(z, aa, bb, GG, 1e-15)
                g_b, _ = our_step(z, aa, bb, GG, 1e-13, grad)
                tight = "float64, POT stopThr 1e-15 / otcls tol 1e-13"
            elif grad == "autodiff":
                g_a, _, _ = pot_step(z, aa, bb, GG, 0.0, iters=80)
                g_b, _ = our_step(z, aa, bb, GG, None, grad, iters=80)
                tight = "float32, both 80 unrolled iterations"
            else:
                g_a, _, _ = pot_step(z, aa, bb, GG, 1e-8)
                g_b, _ = our_step(z, aa, bb, GG, 2e-7, grad)
                tight = "float32, POT stopThr 1e-8 / otcls tol 2e-7"
            bound = training_floor(machine_ops(n, m, dtype), int(res.n_iter), grad, n, m)
            note = (f"gradient vs POT's at a tight tolerance ({tight}): {rel(g_b, g_a):.1e} relative (max |Δ| / "
                    f"max |grad|); at the timed tolerance, vs the float64 exact gradient: POT {rel(g_pot, exact):.1e}, "
                    f"otcls {rel(g_us, exact):.1e}; lower bound = the bare exp of the kernel and mat-vecs of the "
                    "forward iterations, plus " + ("the backward's mat-vecs (as many) and its one rank-2N matrix "
                                                   "product" if grad == "autodiff" else
                                                   "the m×m product and Cholesky factorisation of the backward")
                    + ", timed now")
            rows.append(row(f"train-{name}-{grad}", f"training step {n}×{m}, eps 1, grad={grad!r}", dtype,
                            "POT ot.sinkhorn on torch tensors, autograd", t_pot, t_us, str(it_pot), iters_of(res),
                            float((res.plan.detach() - P_pot).abs().max()), marginal_error(P_pot, aa, bb),
                            marginal_error(res.plan.detach(), aa, bb), bound, res.method, note))


def machine_ops(n, m, dtype):
    """Seconds of the bare operations a training step's solve is made of, measured now (best of 5 runs of 200):
    the kernel's exp, one mat-vec with K and one with Kᵀ, the backward's matrix product per pair of recorded
    vectors, and the implicit backward's m×m product plus Cholesky."""
    g = torch.Generator().manual_seed(5)
    K = torch.rand(n, m, generator=g, dtype=torch.float64).to(dtype) + 0.5
    KT, C = K.t().contiguous(), -K.log()
    v, u = torch.rand(1, m, dtype=dtype) + 0.5, torch.rand(1, n, dtype=dtype) + 0.5
    L, R = torch.rand(2 * 64, n, dtype=dtype), torch.rand(2 * 64, m, dtype=dtype)
    S = torch.mm(K.t(), K).double() + torch.eye(m, dtype=torch.float64) * n

    def each(fn, reps=200):
        fn()
        return best_of(lambda: [fn() for _ in range(reps)])[0] / reps
    return dict(exp=each(lambda: torch.exp(C)), matvecs=each(lambda: (torch.mm(v, KT), torch.mm(u, K))),
                rank_pair=each(lambda: torch.mm(L.t(), R), 20) / (2 * 64),
                schur=each(lambda: torch.linalg.cholesky(torch.mm(K.t(), K / 2.0).double() + S), 20))


def training_floor(ops, iters, grad, n, m):
    """Seconds: the kernel's exp, two mat-vecs per forward iteration, and the backward's least work."""
    t = ops["exp"] + iters * ops["matvecs"]
    if grad == "autodiff":
        return t + iters * ops["matvecs"] + (2 * iters + 1) * ops["rank_pair"]
    return t + ops["schur"]


def inference_rows(machine, n, ms, rows):
    dtype = torch.float32
    for m in ms:
        C, a, prior = classification_problem(1, n, m, dtype, seed=1)
        C, a, prior = C[0], a[0], prior[0]
        Cn, an, pn = C.numpy(), a.numpy(), prior.numpy()
        (t_pot, (P_pot, log)), (t_us, res) = race(
            lambda: pot.sinkhorn(an, pn, Cn, 1.0, stopThr=1e-6, numItermax=10000, log=True),
            lambda: solve(C, a, prior, eps=1.0, tol=1e-6, grad="detach"))
        rows.append(row(None, f"inference {n}×{m}, eps 1, balanced (b = prior)", dtype, "POT ot.sinkhorn", t_pot, t_us,
                        str(log["niter"]), iters_of(res), float(np.abs(res.plan.numpy() - P_pot).max()),
                        marginal_error(P_pot, an, pn), marginal_error(res.plan, an, pn),
                        lower_bound(machine, int(res.n_iter), 1, n, m, dtype), res.method))
        lo, hi = 0.9 * prior, 1.1 * prior
        kw = dict(lower=lo, upper=hi, eps=1.0, tol=1e-6, grad="detach")
        (t_log, ref), (t_us, res) = race(lambda: solve(C, a, method="dbot_ascent", **kw), lambda: solve(C, a, **kw))
        rows.append(row(None, f"inference {n}×{m}, eps 1, DB-OT 0.9–1.1 × prior", dtype,
                        "otcls dbot_ascent (log domain, the previous default)", t_log, t_us, iters_of(ref),
                        iters_of(res), float((res.plan - ref.plan).abs().max()),
                        marginal_error(ref.plan, an, lower=lo, upper=hi),
                        marginal_error(res.plan, an, lower=lo, upper=hi),
                        lower_bound(machine, int(res.n_iter), 1, n, m, dtype), res.method))


def cvxpy_row(machine, n, m, rows):
    import cvxpy as cp

    C, a, prior = classification_problem(1, n, m, torch.float64, seed=2)
    C, a, prior = C[0], a[0], prior[0]
    lo, hi = 0.9 * prior, 1.1 * prior
    P = cp.Variable((n, m), nonneg=True)
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(C.numpy() - 1.0, P)) - cp.sum(cp.entr(P))),
                         [cp.sum(P, 1) == a.numpy(), cp.sum(P, 0) >= lo.numpy(), cp.sum(P, 0) <= hi.numpy()])
    t_cvx, _ = best_of(lambda: problem.solve(solver=cp.CLARABEL), repeats=1)
    t_us, res = best_of(lambda: solve(C, a, lower=lo, upper=hi, eps=1.0, tol=1e-8, max_iter=100000, grad="detach"))
    rows.append(row("cvxpy", f"DB-OT {n}×{m}, eps 1, 0.9–1.1 × prior", torch.float64, "cvxpy + Clarabel (1 run)",
                    t_cvx, t_us, str(problem.solver_stats.num_iters), iters_of(res),
                    float(np.abs(res.plan.numpy() - P.value).max()),
                    marginal_error(P.value, a.numpy(), lower=lo.numpy(), upper=hi.numpy()),
                    marginal_error(res.plan, a.numpy(), lower=lo.numpy(), upper=hi.numpy()),
                    lower_bound(machine, int(res.n_iter), 1, n, m, torch.float64), res.method, "otcls at tol 1e-8"))


class _TimedClustering(DBOTClustering):
    """DBOTClustering that records the time of each phase and the iterations of each DB-OT solve."""

    def fit(self, X, y=None):
        self.phases_ = dict(cost=0.0, solve=0.0, centroids=0.0)
        self.solve_iters_ = []
        t0 = time.perf_counter()
        super().fit(X, y)
        self.phases_["total"] = time.perf_counter() - t0
        return self

    def _timed(self, phase, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.phases_[phase] += time.perf_counter() - t0
        return out

    def _cost(self, Z, centers):
        return self._timed("cost", super()._cost, Z, centers)

    def _plan(self, cost, init_g=None):
        res = self._timed("solve", super()._plan, cost, init_g)
        self.solve_iters_.append(int(res.n_iter))
        return res

    def _update(self, Z, plan, centers):
        return self._timed("centroids", super()._update, Z, plan, centers)


def cluster_row(machine, n, k, rows):
    from k_means_constrained import KMeansConstrained
    from sklearn.datasets import make_blobs

    rng = np.random.default_rng(0)
    sizes = rng.multinomial(n, rng.dirichlet(np.full(k, 3.0)))
    X, _ = make_blobs(sizes.tolist(), n_features=2, cluster_std=1.5, center_box=(-10, 10), random_state=0)
    lo, hi = int(np.ceil(0.9 * n / k)), int(1.1 * n / k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (t_kmc, kmc), (t_us, ours) = race(
            lambda: KMeansConstrained(k, size_min=lo, size_max=hi, n_init=1, random_state=0).fit(X),
            lambda: _TimedClustering(k, size_min=lo, size_max=hi, eps=0.1, ot_tol=1e-4, random_state=0).fit(X))

    def inertia(labels):
        return sum(float(((X[labels == j] - X[labels == j].mean(0)) ** 2).sum()) for j in range(k))

    ph = ours.phases_
    rest = ph["total"] - ph["cost"] - ph["solve"] - ph["centroids"]
    where = (f"otcls time: DB-OT solves {ph['solve']:.2f} s ({len(ours.solve_iters_)} solves, iterations "
             f"{ours.solve_iters_}), costs {ph['cost']:.2f} s, centroids {ph['centroids']:.2f} s, rounding to "
             f"exact sizes + init {rest:.2f} s; inertia {inertia(ours.rounded_labels_):.4g} (k-means-constrained "
             f"{inertia(kmc.labels_):.4g}); sizes {np.bincount(ours.rounded_labels_).min()}–"
             f"{np.bincount(ours.rounded_labels_).max()} in [{lo}, {hi}]")
    bound = sum(lower_bound(machine, it, 1, n, k, torch.float64) for it in ours.solve_iters_)
    rows.append(row("cluster", f"clustering {n} points × {k} clusters", torch.float64,
                    "k-means-constrained n_init=1", t_kmc, t_us, str(kmc.n_iter_), str(ours.n_iter_), math.nan,
                    math.nan, math.nan, bound, "dbot_ascent_scaling", where))


# ------------------------------------------------------------------------------------------ output
def _version(dist):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def fmt(x, spec):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(rows, meta):
    head = ("| case | dtype | peer | peer s | otcls s | ratio | target | iterations peer / otcls | max abs ΔP "
            "| marginal err peer / otcls | lower bound s | otcls method |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        target = "—" if r["target"] is None else f"≥ {r['target']:g} ({r['status']})"
        lines.append(f"| {r['case']} | {r['dtype']} | {r['peer']} | {fmt(r['peer_s'], '.3f')} | {r['otcls_s']:.3f} "
                     f"| {fmt(r['ratio'], '.2f')} | {target} | {r['peer_iters']} / {r['otcls_iters']} "
                     f"| {fmt(r['max_abs_dP'], '.1e')} | {fmt(r['peer_marginal_err'], '.1e')} / "
                     f"{fmt(r['otcls_marginal_err'], '.1e')} | {fmt(r['lower_bound_s'], '.3f')} "
                     f"| {r['otcls_method']} |")
    notes = [f"- {r['case']} vs {r['peer']}: {r['note']}" for r in rows if r["note"]]
    m = meta["machine"]
    return "\n".join([
        "# otcls solver benchmark", "",
        f"{meta['cpu']}, {meta['threads']} torch threads; torch {meta['torch']}, POT {meta['pot']}, "
        f"ott-jax {meta['ott']}; load average {meta['load_before']} before, {meta['load_after']} after "
        "(other processes may have shared the cores).", "",
        f"Measured in this run: streaming read {m['stream_GBps']:.1f} GB/s, in-cache read {m['cache_GBps']:.1f} GB/s, "
        f"GEMM {m['gemm_f32_GFLOPs']:.0f} GFLOP/s (float32) / {m['gemm_f64_GFLOPs']:.0f} (float64), exp "
        f"{m['exp_f32_Gps']:.2f} G/s (float32) / {m['exp_f64_Gps']:.2f} (float64).", "",
        f"ratio = peer time / otcls time (best of {REPEATS} each, runs alternated, same run); marginal error = L1 "
        "violation of rows + "
        "columns (or bounds) / mass; lower bound = otcls's exponentials + its iterations × max(two kernel "
        "reads, mat-vec flops) at the measured rates.", "", *lines, "", *notes, ""])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", default="results/bench/solvers")
    args = ap.parse_args(argv)
    quick = args.quick
    meta = dict(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                torch=torch.__version__, pot=pot.__version__, ott=_version("ott-jax"),
                load_before=f"{os.getloadavg()[0]:.2f}")
    print("measuring the machine ...", flush=True)
    meta["machine"] = machine = measure_machine()
    rows: list = []
    steps = [("single problems", lambda: single_rows(machine, 300 if quick else 2000, rows)),
             ("classification batch",
              lambda: batch_rows(machine, *((16, 128, 20) if quick else (256, 512, 100)), rows)),
             ("training step", lambda: training_rows(machine, *((128, 20) if quick else (512, 100)), rows)),
             ("inference shapes", lambda: inference_rows(machine, 1000 if quick else 10000, (10, 100), rows)),
             ("DB-OT vs cvxpy", lambda: cvxpy_row(machine, *((64, 10) if quick else (512, 100)), rows)),
             ("clustering", lambda: cluster_row(machine, 2000 if quick else 20000, 10, rows))]
    for name, step in steps:
        print(f"{name} ...", flush=True)
        step()
    meta["load_after"] = f"{os.getloadavg()[0]:.2f}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, meta)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, default=float))
    print(text)
    print(f"wrote {out}.md and {out}.json")


if __name__ == "__main__":
    sys.exit(main())
