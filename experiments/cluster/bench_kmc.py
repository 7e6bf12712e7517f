"""DB-OT clustering vs k-means-constrained on 20,000 points × 10 clusters: bounds, objective, time.

Both get the same integer size range. Timings are wall-clock on this machine, one run each.
Writes results/cluster/bench_kmc.md.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from k_means_constrained import KMeansConstrained
from sklearn.datasets import make_blobs

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, bound_ok, inertia, markdown  # noqa: E402

from otcls.cluster import DBOTClustering  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--slack", type=float, default=0.1, help="sizes in [(1-slack) n/k, (1+slack) n/k]")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    sizes = rng.multinomial(args.n, rng.dirichlet(np.full(args.k, 3.0)))  # unequal true clusters
    X, _ = make_blobs(sizes.tolist(), n_features=2, cluster_std=1.5, center_box=(-10, 10), random_state=0)
    lo, hi = int(np.ceil((1 - args.slack) * args.n / args.k)), int((1 + args.slack) * args.n / args.k)
    rows = []
    runs = [
        ("DB-OT (rounded labels)", lambda: DBOTClustering(args.k, size_min=lo, size_max=hi, eps=0.1, ot_tol=1e-4,
                                                          random_state=0)),
        ("k-means-constrained n_init=1", lambda: KMeansConstrained(args.k, size_min=lo, size_max=hi, n_init=1,
                                                                   random_state=0)),
        ("k-means-constrained n_init=10 (default)", lambda: KMeansConstrained(args.k, size_min=lo, size_max=hi,
                                                                              random_state=0)),
    ]
    times = {}
    for name, make in runs:
        print(f"running {name} ...", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            model = make().fit(X)
            times[name] = time.perf_counter() - t
        labels = getattr(model, "rounded_labels_", model.labels_)
        s = np.bincount(labels, minlength=args.k)
        rows.append([name, f"{bound_ok(labels, args.k, lo, hi):.0%}", f"{s.min()}–{s.max()}",
                     f"{inertia(X, labels):.4g}", f"{times[name]:.2f}"])
    base = times[runs[0][0]]
    for r, (name, _) in zip(rows, runs):
        r.append(f"{times[name] / base:.1f}×")
    OUT.mkdir(parents=True, exist_ok=True)
    table = (f"{args.n} points × {args.k} clusters (2-D blobs, true sizes {sorted(sizes.tolist())}), "
             f"size range [{lo}, {hi}]\n\n"
             + markdown(rows, ["method", "clusters within bounds", "sizes", "inertia Σ‖x−μ‖²",
                               "time (s)", "time / DB-OT"]))
    (OUT / "bench_kmc.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
