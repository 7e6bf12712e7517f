"""scikit-learn estimator for size-bounded barycenter clustering with DB-OT (DB-OT paper §4).

Alternate until the centroids stop moving:

1. with centroids ``c`` fixed, ``C_ik = d(x_i, c_k)`` and the plan ``P`` solves entropic DB-OT
   ``min <C,P> - eps·H(P)`` s.t. ``P1 = 1/n``, ``size_min ≤ Pᵀ1 ≤ size_max`` (as fractions);
2. with ``P`` fixed, ``c_k`` = barycenter of the samples with weights ``λ_ik P_ik``
   (:mod:`otcls.cluster.centroids`).

``labels_`` is ``argmax_k P_ik`` as in the paper: the plan's column sums meet the bounds, the
argmax labels need not. ``rounded_labels_`` meets the integer size bounds exactly
(:func:`otcls.cluster.rounding.round_to_sizes` with cost ``-log P``).
"""
from __future__ import annotations

import numpy as np
import torch

from otcls._extras import require

require("cluster", "sklearn")

from sklearn.base import BaseEstimator, ClusterMixin  # noqa: E402
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from otcls.ot import solve

from .centroids import barycenter_weights, euclidean_centroids, wasserstein_centroids
from .costs import grid_cost, grid_shape_for, squared_euclidean, wasserstein_cost
from .rounding import integer_size_bounds, round_to_sizes

SPACES = ("euclidean", "wasserstein")


class DBOTClustering(ClusterMixin, BaseEstimator):
    """Barycenter clustering with cluster sizes bounded by DB-OT.

    Parameters:
        n_clusters: number of clusters ``k``.
        size_min, size_max: bounds on cluster sizes; floats are fractions of ``n_samples``,
            integers are counts; a scalar or one value per cluster; None = 0 / no bound.
        eps: entropic regulariser, relative to the mean of the initial cost matrix
            (the absolute value used is ``eps_``).
        space: ``"euclidean"`` (``d = |x - c|²``, weighted means) or ``"wasserstein"`` (rows of
            ``X`` are non-negative histograms on a grid, ``d`` = entropic OT cost with the
            grid's squared-distance ground cost, centroids are Bregman barycenters).
        reweight: use the paper's barycenter re-weighting (see :mod:`otcls.cluster.centroids`).
        init: ``"k-means++"`` or an array ``(n_clusters, n_features)`` of initial centroids.
        max_iter: maximum number of alternations.
        tol: stop when ``Σ_k |c_k - c_k_old|² ≤ tol · mean(var(X, axis=0))`` (as in KMeans; for
            space="wasserstein" X is the row-normalised histograms).
        random_state: seed for k-means++.
        grid_shape: grid of the histograms (space="wasserstein"); default the square grid.
        grid_eps: regulariser of the Wasserstein costs/barycenters (ground cost in ``[0, 1]``).
        ot_tol, ot_max_iter: stopping tolerance (relative marginal/bound violation) and iteration
            cap of each inner DB-OT solve.

    ``predict`` assigns new points to the nearest centroid by default; ``predict(X, bounded=True)``
    applies the size bounds to the predicted batch instead.

    Attributes:
        cluster_centers_ (k, d), labels_ (n,), rounded_labels_ (n,), plan_ (n, k) with rows
        summing to ``1/n``, n_iter_, size_bounds_ (integer ``(lo, hi)``), eps_, n_features_in_.
    """

    def __init__(self, n_clusters=8, *, size_min=None, size_max=None, eps=0.05, space="euclidean",
                 reweight=True, init="k-means++", max_iter=100, tol=1e-4, random_state=None,
                 grid_shape=None, grid_eps=0.05, ot_tol=1e-5, ot_max_iter=1000):
        self.n_clusters = n_clusters
        self.size_min = size_min
        self.size_max = size_max
        self.eps = eps
        self.space = space
        self.reweight = reweight
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.grid_shape = grid_shape
        self.grid_eps = grid_eps
        self.ot_tol = ot_tol
        self.ot_max_iter = ot_max_iter

    # ----------------------------------------------------------------------------- fitting
    def fit(self, X, y=None):
        """Cluster ``X`` (n_samples, n_features)."""
        self._check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        n = X.shape[0]
        if n < self.n_clusters:
            raise ValueError(f"n_samples={n} should be >= n_clusters={self.n_clusters}")
        lo, hi = integer_size_bounds(self.size_min, self.size_max, n, self.n_clusters)
        self.size_bounds_ = (lo, hi)
        self._lower, self._upper = self._mass_bounds(n)
        Z = self._prepare(X)
        centers = self._initial_centers(Z)
        cost = self._cost(Z, centers)
        # A zero initial cost (every point on a centroid) makes every plan optimal: any scale will do.
        scale = float(cost.mean())
        self.eps_ = float(self.eps) * (scale if scale > 0 else 1.0)
        threshold = self.tol * float(Z.var(0, unbiased=False).mean())
        self.n_iter_ = 0
        g = None  # column potentials of the last plan: the next solve starts from them
        for _ in range(self.max_iter):
            self.n_iter_ += 1
            res = self._plan(cost, g)
            g = res.g
            new = self._update(Z, res.plan, centers)
            shift = float((new - centers).pow(2).sum())
            centers = new
            cost = self._cost(Z, centers)
            if shift <= threshold:
                break
        res = self._plan(cost, g)
        self.cluster_centers_ = centers.numpy()
        self.plan_ = res.plan.numpy()
        self.labels_ = self.plan_.argmax(1)
        log_plan = (res.f[:, None] + res.g[None, :] - cost) / self.eps_
        self.rounded_labels_ = round_to_sizes(-log_plan.numpy(), lo, hi)
        return self

    def predict(self, X, *, bounded: bool = False):
        """Cluster of each row of ``X``.

        ``bounded=False`` (default): the nearest centroid, ``argmin_k d(x_i, c_k)``, each point on its own
        (a few new points from one blob all go to that blob's cluster). ``bounded=True``: the argmax of the
        DB-OT plan between ``X`` and the centroids, whose column masses keep the fitted size bounds as
        fractions of ``len(X)`` (integer bounds as fractions of the training set): for a batch drawn like
        the training set; on the training data it gives ``labels_``.
        """
        if not isinstance(bounded, (bool, np.bool_)):
            raise ValueError(f"bounded must be True or False, got {bounded!r}")
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        cost = self._cost(self._prepare(X), torch.from_numpy(self.cluster_centers_))
        if not bounded:
            return cost.argmin(1).numpy()
        return self._plan(cost).plan.argmax(1).numpy()

    # ----------------------------------------------------------------------------- helpers
    def _check_params(self):
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if not np.isscalar(self.eps) or not self.eps > 0:
            raise ValueError(f"eps must be a positive number, got {self.eps!r}")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if isinstance(self.init, str) and self.init != "k-means++":
            raise ValueError(f"init must be 'k-means++' or an array of shape (n_clusters, n_features), got {self.init!r}")

    def _mass_bounds(self, n: int):
        """Column bounds of the plan (total mass 1): fractions as given, counts divided by ``n``."""
        def frac(v):
            if v is None:
                return None
            arr = np.broadcast_to(np.asarray(v), (self.n_clusters,)).copy()
            return torch.as_tensor(arr / n if np.issubdtype(arr.dtype, np.integer) else arr, dtype=torch.float64)
        lower, upper = frac(self.size_min), frac(self.size_max)
        if lower is not None and not bool((lower > 0).any()):
            lower = None
        if upper is not None and bool((upper >= 1).all()):
            upper = None
        return lower, upper

    def _prepare(self, X: np.ndarray) -> torch.Tensor:
        Z = torch.as_tensor(X, dtype=torch.float64)
        if self.space == "euclidean":
            return Z
        if bool((Z < 0).any()):
            raise ValueError("space='wasserstein' needs non-negative histograms; X has negative entries")
        mass = Z.sum(1, keepdim=True)
        if bool((mass <= 0).any()):
            raise ValueError("space='wasserstein' needs every row of X to have positive mass (some rows are all zero)")
        self._ground = grid_cost(grid_shape_for(Z.shape[1], self.grid_shape))
        return Z / mass

    def _initial_centers(self, Z: torch.Tensor) -> torch.Tensor:
        if isinstance(self.init, str):
            centers, _ = kmeans_plusplus(Z.numpy(), self.n_clusters, random_state=check_random_state(self.random_state))
            return torch.from_numpy(centers)
        centers = np.asarray(self.init, dtype=np.float64)
        if centers.shape != (self.n_clusters, Z.shape[1]):
            raise ValueError(f"init array must have shape ({self.n_clusters}, {Z.shape[1]}), got {centers.shape}")
        centers = torch.from_numpy(centers.copy())
        return centers / centers.sum(1, keepdim=True) if self.space == "wasserstein" else centers

    def _cost(self, Z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        if self.space == "euclidean":
            return squared_euclidean(Z, centers)
        return wasserstein_cost(Z, centers, self._ground, self.grid_eps, max_iter=self.ot_max_iter)

    def _plan(self, cost: torch.Tensor, init_g=None):
        """DB-OT plan for ``cost``; ``method="auto"`` multiplies by the kernel (scaling domain) whenever
        ``eps_`` keeps it in range, which it does for the relative ``eps`` this estimator is used with."""
        n = cost.shape[0]
        a = torch.full((n,), 1.0 / n, dtype=torch.float64)
        return solve(cost, a, eps=self.eps_, lower=self._lower, upper=self._upper, tol=self.ot_tol,
                     max_iter=self.ot_max_iter, init_g=init_g, grad="detach")

    def _update(self, Z: torch.Tensor, plan: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        W = barycenter_weights(plan, self.reweight)
        if self.space == "euclidean":
            return euclidean_centroids(Z, W, centers)
        return wasserstein_centroids(Z, W, centers, self._ground, self.grid_eps, max_iter=self.ot_max_iter)
