"""DBOTClustering: bounds, K-means limit, re-weighting by hand, Wasserstein barycenters, errors."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import make_blobs

from otcls.cluster import DBOTClustering
from otcls.cluster.centroids import barycenter_weights, euclidean_centroids, wasserstein_centroids
from otcls.cluster.costs import grid_cost


@pytest.fixture(scope="module")
def skewed_blobs():
    # 3 blobs of 80 / 40 / 30 points; bounds force sizes towards 50 each.
    X, y = make_blobs([80, 40, 30], centers=[[0, 0], [3, 0], [1.5, 2.5]], cluster_std=1.0, random_state=0)
    return X, y


def test_plan_meets_bounds_and_rounding_meets_counts(skewed_blobs):
    X, _ = skewed_blobs
    m = DBOTClustering(3, size_min=0.3, size_max=0.36, eps=0.05, random_state=0).fit(X)
    cols = m.plan_.sum(0)
    np.testing.assert_allclose(m.plan_.sum(1), 1 / len(X), rtol=1e-6)
    assert np.all(cols >= 0.3 - 1e-5) and np.all(cols <= 0.36 + 1e-5)
    sizes = np.bincount(m.rounded_labels_, minlength=3)
    assert np.all(sizes >= 45) and np.all(sizes <= 54)
    # Without bounds the argmax sizes follow the skewed data instead.
    free = DBOTClustering(3, eps=0.05, random_state=0).fit(X)
    assert np.bincount(free.labels_).max() > 54


def test_loose_bounds_small_eps_equal_kmeans():
    X, _ = make_blobs(90, centers=[[0, 0], [10, 0], [0, 10]], cluster_std=0.7, random_state=1)
    init, _ = kmeans_plusplus(X, 3, random_state=0)
    km = KMeans(3, init=init, n_init=1).fit(X)
    m = DBOTClustering(3, size_min=0.1, size_max=0.6, eps=1e-3, init=init).fit(X)
    np.testing.assert_array_equal(m.labels_, km.labels_)
    np.testing.assert_array_equal(m.rounded_labels_, km.labels_)
    np.testing.assert_allclose(m.cluster_centers_, km.cluster_centers_, atol=1e-6)


def test_reweighted_centroids_by_hand():
    X = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    P = torch.tensor([[0.2, 0.1], [0.25, 0.05], [0.1, 0.3]], dtype=torch.float64)
    # argmax rows: 0, 0, 1 → λ = [[1,0],[1,0],[0,1]]; c_0 = (0.2·x0 + 0.25·x1)/0.45, c_1 = x2.
    c = euclidean_centroids(X, barycenter_weights(P, True), torch.zeros(2, 2, dtype=torch.float64))
    np.testing.assert_allclose(c.numpy(), [[0.5 / 0.45, 0.0], [0.0, 4.0]], rtol=1e-12)
    # No re-weighting: c_1 = (0.1·x0 + 0.05·x1 + 0.3·x2) / 0.45.
    c = euclidean_centroids(X, barycenter_weights(P, False), torch.zeros(2, 2, dtype=torch.float64))
    np.testing.assert_allclose(c[1].numpy(), [0.1 / 0.45, 1.2 / 0.45], rtol=1e-12)


def test_orphan_cluster_keeps_plain_weights():
    P = torch.tensor([[0.4, 0.1], [0.3, 0.2]], dtype=torch.float64)
    W = barycenter_weights(P, True)
    np.testing.assert_allclose(W.numpy(), [[0.4, 0.1], [0.3, 0.2]])


def test_wasserstein_barycenter_of_identical_histograms():
    grid = np.linspace(0, 1, 12)
    h = np.exp(-((grid[:, None] - 0.4) ** 2 + (grid[None, :] - 0.6) ** 2) / 0.05).ravel()
    H = torch.tensor(np.tile(h / h.sum(), (4, 1)))
    W = torch.tensor([[0.1], [0.3], [0.2], [0.4]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = wasserstein_centroids(H, W, H[:1], grid_cost((12, 12)), eps=0.002, max_iter=3000)
    assert np.abs(c[0].numpy() - H[0].numpy()).sum() < 0.05


def test_wasserstein_space_separates_shifted_blobs():
    rng = np.random.default_rng(0)
    img = np.zeros((2, 6, 6))
    img[0, 1:3, 1:3] = 1.0
    img[1, 3:5, 3:5] = 1.0
    X = np.repeat(img.reshape(2, -1), 6, axis=0) + rng.random((12, 36)) * 0.05
    y = np.repeat([0, 1], 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = DBOTClustering(2, size_min=5, size_max=7, space="wasserstein", grid_eps=0.05, max_iter=3,
                           random_state=0).fit(X)
    assert m.cluster_centers_.shape == (2, 36)
    np.testing.assert_allclose(m.cluster_centers_.sum(1), 1.0, rtol=1e-5)
    agree = (m.labels_ == y).mean()
    assert agree in (0.0, 1.0)


def test_predict_on_training_data_matches_labels(skewed_blobs):
    X, _ = skewed_blobs
    m = DBOTClustering(3, size_min=45, size_max=54, random_state=0).fit(X)
    np.testing.assert_array_equal(m.predict(X, bounded=True), m.labels_)


@pytest.mark.parametrize("kwargs,X,match", [
    (dict(n_clusters=3, size_min=0.4), np.random.rand(30, 2), "minimum sizes add up to 36 > n_samples=30"),
    (dict(n_clusters=3, size_max=5), np.random.rand(30, 2), "maximum sizes add up to 15 < n_samples=30"),
    (dict(n_clusters=2), np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
    (dict(n_clusters=2), np.empty((0, 2)), "0 sample"),
    (dict(n_clusters=2), np.ones((1, 2)), "n_samples=1 should be >= n_clusters=2"),
    (dict(n_clusters=2, space="wasserstein"), -np.ones((4, 4)), "non-negative"),
    (dict(n_clusters=2, space="wasserstein"), np.ones((4, 5)), "grid_shape"),
    (dict(n_clusters=2, space="hyperbolic"), np.ones((4, 4)), "space must be one of"),
    (dict(n_clusters=2, init=np.zeros((3, 2))), np.random.rand(4, 2), r"init array must have shape \(2, 2\)"),
])
def test_bad_input_raises(kwargs, X, match):
    with pytest.raises(ValueError, match=match):
        DBOTClustering(**kwargs).fit(X)


def test_single_sample_single_cluster():
    m = DBOTClustering(1).fit(np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(m.labels_, [0])
    np.testing.assert_allclose(m.cluster_centers_, [[1.0, 2.0]])
