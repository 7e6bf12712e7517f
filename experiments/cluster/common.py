"""Shared helpers for the clustering experiments: metrics, Markdown tables, output folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics.cluster import contingency_matrix

OUT = Path("results/cluster")


def purity(y_true, labels) -> float:
    """Cluster accuracy: each cluster is labelled with its majority class (top-1 within cluster)."""
    c = contingency_matrix(y_true, labels)
    return float(c.max(axis=0).sum() / len(y_true))


def inertia(X, labels) -> float:
    """K-means objective of hard labels: Σ_i |x_i - mean of its cluster|²."""
    return float(sum(((X[labels == k] - X[labels == k].mean(0)) ** 2).sum() for k in np.unique(labels)))


def bound_ok(labels, n_clusters, lo, hi) -> float:
    """Fraction of clusters whose size lies in ``[lo, hi]``."""
    sizes = np.bincount(labels, minlength=n_clusters)
    return float(np.mean((sizes >= lo) & (sizes <= hi)))


def markdown(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
