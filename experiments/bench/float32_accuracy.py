"""How accurate float32 solves are on the benchmark's problems: iterations, marginal error, plan vs float64.

For each problem the float32 solve (``method="auto"``) runs at ``tol`` 1e-6 and 1e-5; its marginal
error is recomputed in float64 from the float32 plan (L1 over rows + columns or bounds, over the mass),
and its plan is compared with a float64 solve at ``tol = 1e-9`` (max abs difference, and that over the
largest plan entry). Writes results/bench/float32_accuracy.md. Run: ``make bench-float32``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_solvers import classification_problem, marginal_error, points_problem  # noqa: E402

from otcls.ot import solve  # noqa: E402

TOLS = (1e-6, 1e-5)


def problems(quick: bool):
    n = 300 if quick else 2000
    for eps in (0.02, 0.005):
        C, a, b = points_problem(n, torch.float64)
        yield f"{n}×{n} points, eps {eps}", C, a, dict(b=b), eps
    B, n_cls, m = (16, 128, 20) if quick else (256, 512, 100)
    C, a, b = classification_problem(B, n_cls, m, torch.float64)
    yield f"{B} × {n_cls}×{m} classification, eps 1", C, a, dict(b=b), 1.0
    rows = 1000 if quick else 10000
    for m in (10, 100):
        C, a, prior = classification_problem(1, rows, m, torch.float64, seed=1)
        C, a, prior = C[0], a[0], prior[0]
        yield f"{rows}×{m}, eps 1, balanced", C, a, dict(b=prior), 1.0
        yield f"{rows}×{m}, eps 1, DB-OT 0.9–1.1", C, a, dict(lower=0.9 * prior, upper=1.1 * prior), 1.0
    C, a, prior = classification_problem(1, 512, 100, torch.float64, seed=2)
    yield "512×100, eps 1, DB-OT 0.9–1.1", C[0], a[0], dict(lower=0.9 * prior[0], upper=1.1 * prior[0]), 1.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", default="results/bench/float32_accuracy.md")
    args = ap.parse_args(argv)
    lines = ["# float32 accuracy of otcls solves", "",
             "Marginal error: L1 violation of rows + columns (or bounds) over the mass, recomputed in float64 "
             "from the float32 plan. ΔP: max abs difference to a float64 solve at tol 1e-9 (over max P).", "",
             "| problem | solver (auto) | " + " | ".join(f"tol {t:g}: iterations, marginal error, max abs ΔP (/ max P)"
                                                        for t in TOLS) + " |",
             "|---|---|" + "---|" * len(TOLS)]
    for name, C, a, cols, eps in problems(args.quick):
        print(name, flush=True)
        ref = solve(C, a, eps=eps, tol=1e-9, max_iter=100000, grad="detach", **cols)
        cells, method = [], ""
        for tol in TOLS:
            res = solve(C.float(), a.float(), eps=eps, tol=tol, max_iter=100000, grad="detach",
                        **{k: v.float() for k, v in cols.items()})
            method = res.method
            P = res.plan.double()
            err = marginal_error(P.numpy(), a.numpy(), **{k: v.numpy() for k, v in cols.items()})
            dP = float((P - ref.plan).abs().max())
            iters = res.n_iter.double()
            it = f"{iters.mean():.1f}" if iters.numel() > 1 else str(int(iters))
            cells.append(f"{it}, {err:.1e}, {dP:.1e} ({dP / float(ref.plan.abs().max()):.1e})")
        lines.append(f"| {name} | `{method}` | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
