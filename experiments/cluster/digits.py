"""DB-OT paper Fig. 3 setting on scikit-learn's 8×8 digits: 12 images per class, 16 clusters.

K-means, DB-OT Euclidean, DB-OT Wasserstein (5 alternations, as in the paper's appendix) and
k-means-constrained, all with sizes in [4, 11] (0.5–1.5 × n/k) where they take bounds.
Writes results/cluster/digits.md, digits_sizes.png (cluster-size histograms) and
digits_centroids.png (centroid images).
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from k_means_constrained import KMeansConstrained  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, bound_ok, inertia, markdown, purity  # noqa: E402

from otcls.cluster import DBOTClustering  # noqa: E402

K = 16


def subset(per_class: int = 12):
    X, y = load_digits(return_X_y=True)
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    return X[idx], y[idx]


def main():
    X, y = subset()
    lo, hi = int(np.ceil(0.5 * len(X) / K)), int(1.5 * len(X) / K)
    methods = {
        "K-means": lambda: KMeans(K, n_init=1, random_state=0),
        "DB-OT Euclidean": lambda: DBOTClustering(K, size_min=lo, size_max=hi, eps=0.05, random_state=0),
        "DB-OT Wasserstein": lambda: DBOTClustering(K, size_min=lo, size_max=hi, space="wasserstein",
                                                    eps=0.05, grid_eps=0.05, max_iter=5, random_state=0),
        "k-means-constrained": lambda: KMeansConstrained(K, size_min=lo, size_max=hi, n_init=1, random_state=0),
    }
    rows, fits = [], {}
    for name, make in tqdm(methods.items(), desc="digits methods"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            model = make().fit(X)
            elapsed = time.perf_counter() - t
        fits[name] = model
        for kind, labels in [("argmax", model.labels_)] + (
                [("rounded", model.rounded_labels_)] if hasattr(model, "rounded_labels_") else []):
            s = np.bincount(labels, minlength=K)
            rows.append([name, kind, f"{100 * purity(y, labels):.2f}", f"{s.min()}–{s.max()}",
                         f"{bound_ok(labels, K, lo, hi):.0%}", f"{inertia(X, labels):.4g}", f"{elapsed:.2f}"])
    OUT.mkdir(parents=True, exist_ok=True)
    text = (f"digits, {len(X)} images (12 per class), {K} clusters, size bounds [{lo}, {hi}]\n\n"
            + markdown(rows, ["method", "labels", "accuracy (%)", "sizes", "clusters within bounds",
                              "inertia", "time (s)"]))
    (OUT / "digits.md").write_text(text)
    print(text)

    fig, axes = plt.subplots(1, len(fits), figsize=(4 * len(fits), 3), sharey=True)
    for ax, (name, model) in zip(axes, fits.items()):
        labels = getattr(model, "rounded_labels_", model.labels_)
        ax.bar(np.arange(K), np.sort(np.bincount(labels, minlength=K))[::-1])
        ax.axhspan(lo, hi, color="green", alpha=0.15, label="bounds")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("cluster (sorted by size)")
    axes[0].set_ylabel("samples")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "digits_sizes.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(len(fits), K, figsize=(K * 0.8, len(fits) * 1.0))
    for r, (name, model) in enumerate(fits.items()):
        for k in range(K):
            axes[r, k].imshow(model.cluster_centers_[k].reshape(8, 8), cmap="gray_r")
            axes[r, k].axis("off")
        axes[r, 0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(OUT / "digits_centroids.png", dpi=120)


if __name__ == "__main__":
    main()
