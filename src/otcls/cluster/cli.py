"""``otcls cluster``: size-bounded DB-OT clustering of a data file, writing labels and a plot.

Example::

    otcls cluster --data points.csv --n-clusters 3 --size-min 0.3 --size-max 0.36 --out runs/cluster

Reads ``.npy`` (2-D array) or ``.csv``/``.txt`` (one sample per row, comma- or
whitespace-separated, an optional header line). Writes ``labels.csv`` (argmax label and the
exactly size-bounded rounded label per sample), ``centers.npy`` and ``clusters.png``.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import List, Optional

import numpy as np

from .estimator import DBOTClustering


def size_value(text: str):
    """``"45"`` → count 45 (int); ``"0.3"`` → fraction 0.3 (float)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def load_data(path: Path) -> np.ndarray:
    """2-D float array from ``.npy``, ``.csv`` or ``.txt``."""
    if not path.is_file():
        raise ValueError(f"--data {path} does not exist; pass a .npy, .csv or .txt file with one sample per row")
    if path.suffix == ".npy":
        X = np.load(path)
    elif path.suffix in (".csv", ".txt"):
        delimiter = "," if path.suffix == ".csv" else None
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        try:
            [float(v) for v in (first.split(delimiter) if first else [])]
            skip = 0
        except ValueError:
            skip = 1
        X = np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2)
    else:
        raise ValueError(f"--data {path}: unsupported suffix {path.suffix!r}; use .npy, .csv or .txt")
    if X.ndim != 2:
        raise ValueError(f"--data {path} must hold a 2-D array (samples × features), got shape {X.shape}")
    return X.astype(np.float64)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otcls cluster", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help=".npy / .csv / .txt, one sample per row")
    p.add_argument("--n-clusters", type=int, required=True)
    p.add_argument("--size-min", type=size_value, default=None, help="fraction (0.3) or count (45)")
    p.add_argument("--size-max", type=size_value, default=None, help="fraction (0.36) or count (54)")
    p.add_argument("--eps", type=float, default=0.05, help="entropic regulariser, relative to the mean cost")
    p.add_argument("--space", choices=("euclidean", "wasserstein"), default="euclidean")
    p.add_argument("--grid-shape", type=int, nargs="+", default=None, help="histogram grid (wasserstein)")
    p.add_argument("--no-reweight", action="store_true", help="turn off the barycenter re-weighting")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/cluster"))
    return p


def plot(X: np.ndarray, labels: np.ndarray, centers: np.ndarray, path: Path) -> None:
    """Scatter of the first two coordinates (PCA if more) by label, centroids as crosses."""
    from otcls._extras import require

    require("cluster", "matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    if X.shape[1] > 2:
        pca = PCA(2).fit(X)
        X, centers = pca.transform(X), pca.transform(centers)
    elif X.shape[1] == 1:
        X, centers = np.c_[X, np.zeros(len(X))], np.c_[centers, np.zeros(len(centers))]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(X[:, 0], X[:, 1], c=labels, cmap="tab20", s=12)
    ax.scatter(centers[:, 0], centers[:, 1], c="k", marker="x", s=80)
    ax.set_title(f"DB-OT clustering, sizes {np.bincount(labels, minlength=len(centers)).tolist()}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    X = load_data(args.data)
    model = DBOTClustering(args.n_clusters, size_min=args.size_min, size_max=args.size_max, eps=args.eps,
                           space=args.space, grid_shape=args.grid_shape, reweight=not args.no_reweight,
                           max_iter=args.max_iter, random_state=args.seed).fit(X)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "label", "rounded_label"])
        w.writerows(zip(range(len(X)), model.labels_.tolist(), model.rounded_labels_.tolist()))
    np.save(args.out / "centers.npy", model.cluster_centers_)
    plot(X, model.rounded_labels_, model.cluster_centers_, args.out / "clusters.png")
    lo, hi = model.size_bounds_
    print(f"{model.n_iter_} iterations; size bounds [{lo.min()}, {hi.max()}]; "
          f"argmax sizes {np.bincount(model.labels_, minlength=args.n_clusters).tolist()}; "
          f"rounded sizes {np.bincount(model.rounded_labels_, minlength=args.n_clusters).tolist()}; "
          f"wrote {args.out}/labels.csv, centers.npy, clusters.png")
    return 0
