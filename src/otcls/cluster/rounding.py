"""Exact rounding of a soft assignment to hard labels with integer cluster sizes.

Given a score ``cost`` (n, k), find labels ``y`` minimising ``Σ_i cost[i, y_i]`` subject to
``size_min[k] ≤ #{i : y_i = k} ≤ size_max[k]``. This is a min-cost flow (samples → clusters →
overflow node, cluster ``k`` must receive ``size_min[k]`` and may pass on at most
``size_max[k] - size_min[k]`` more); flow problems have integral optima, and we solve it
with OR-Tools' ``SimpleMinCostFlow`` (the solver ``k-means-constrained`` uses, installed
with it).
To round a DB-OT plan, pass ``cost = -log P`` (the most probable labelling under the plan
that meets the bounds exactly).
"""
from __future__ import annotations

import numpy as np

from otcls._extras import require

require("cluster", "ortools")

from ortools.graph.python.min_cost_flow import SimpleMinCostFlow  # noqa: E402


def integer_size_bounds(size_min, size_max, n_samples: int, n_clusters: int):
    """Turn fractional or count bounds into integer counts ``(lo, hi)``, each (k,).

    Floats are fractions of ``n_samples`` (``lo = ceil(f·n)``, ``hi = floor(f·n)``);
    integers are counts. ``None`` means 0 / ``n_samples``. Raises ``ValueError`` when
    ``Σ lo > n`` or ``Σ hi < n`` or some ``lo > hi``.
    """
    lo = _to_counts(size_min, n_samples, n_clusters, "size_min", default=0, up=True)
    hi = _to_counts(size_max, n_samples, n_clusters, "size_max", default=n_samples, up=False)
    check_feasible(lo, hi, n_samples)
    return lo, hi


def _to_counts(value, n: int, k: int, name: str, default: int, up: bool) -> np.ndarray:
    if value is None:
        return np.full(k, default, dtype=np.int64)
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(k, arr.item())
    if arr.shape != (k,):
        raise ValueError(f"{name} must be a scalar or have one value per cluster ({k}), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    frac = arr.astype(np.float64) * n
    counts = np.ceil(frac - 1e-9) if up else np.floor(frac + 1e-9)
    return counts.astype(np.int64)


def check_feasible(lo: np.ndarray, hi: np.ndarray, n: int) -> None:
    """Raise ``ValueError`` unless integer bounds ``lo ≤ hi`` admit ``n`` samples."""
    if np.any(lo < 0):
        raise ValueError(f"size_min must be >= 0, got counts {lo.tolist()}")
    if np.any(lo > hi):
        raise ValueError(f"size_min exceeds size_max for clusters {np.flatnonzero(lo > hi).tolist()} "
                         f"(counts {lo.tolist()} > {hi.tolist()})")
    if lo.sum() > n:
        raise ValueError(f"infeasible size bounds: the minimum sizes add up to {int(lo.sum())} > n_samples={n}; "
                         "lower size_min or n_clusters")
    if hi.sum() < n:
        raise ValueError(f"infeasible size bounds: the maximum sizes add up to {int(hi.sum())} < n_samples={n}; "
                         "raise size_max or n_clusters")


def round_to_sizes(cost, size_min, size_max, resolution: float = 1e7) -> np.ndarray:
    """Labels (n,) minimising ``Σ_i cost[i, label_i]`` with cluster counts in ``[size_min, size_max]``.

    ``cost`` (n, k) finite; ``size_min``/``size_max`` integer arrays (k,) (see
    :func:`integer_size_bounds`). Costs are shifted per row (same minimiser) and scaled to
    integers in ``[0, resolution]`` for the flow solver, so the labelling is optimal up to
    ``max(cost range) / resolution`` per sample; the size bounds hold exactly.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be (n_samples, n_clusters), got shape {cost.shape}")
    n, k = cost.shape
    if not np.all(np.isfinite(cost)):
        raise ValueError("cost contains NaN or inf; pass finite scores (e.g. -log P computed from potentials)")
    lo, hi = np.asarray(size_min, dtype=np.int64), np.asarray(size_max, dtype=np.int64)
    if lo.shape != (k,) or hi.shape != (k,):
        raise ValueError(f"size_min/size_max must have shape ({k},), got {lo.shape} and {hi.shape}")
    check_feasible(lo, hi, n)
    c = cost - cost.min(axis=1, keepdims=True)
    top = c.max()
    c_int = np.rint(c * (resolution / top)).astype(np.int64) if top > 0 else np.zeros((n, k), np.int64)
    # Nodes: samples 0..n-1 (supply 1), clusters n..n+k-1 (demand lo_k), overflow n+k
    # (demand n - Σlo). Arcs: sample→cluster (cap 1, cost c_ik), cluster→overflow (cap hi-lo).
    flow = SimpleMinCostFlow()
    tails = np.r_[np.repeat(np.arange(n), k), n + np.arange(k)]
    heads = np.r_[np.tile(n + np.arange(k), n), np.full(k, n + k)]
    caps = np.r_[np.ones(n * k, np.int64), hi - lo]
    costs = np.r_[c_int.ravel(), np.zeros(k, np.int64)]
    flow.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    supplies = np.r_[np.ones(n, np.int64), -lo, -(n - lo.sum())]
    flow.set_nodes_supplies(np.arange(n + k + 1), supplies)
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise RuntimeError(f"min-cost flow for the rounding failed with status {status}")
    x = flow.flows(np.arange(n * k)).reshape(n, k)
    return x.argmax(axis=1)
