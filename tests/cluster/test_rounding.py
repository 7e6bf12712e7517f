"""Exact size-bounded rounding against an independent LP (scipy HiGHS)."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from otcls.cluster import integer_size_bounds, round_to_sizes


def lp_optimum(cost, lo, hi):
    n, k = cost.shape
    cols = np.arange(n * k)
    rows = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), cols)), shape=(n, n * k))
    col = sp.csr_matrix((np.ones(n * k), (np.tile(np.arange(k), n), cols)), shape=(k, n * k))
    res = linprog(cost.ravel(), A_ub=sp.vstack([col, -col]), b_ub=np.r_[hi, -lo], A_eq=rows,
                  b_eq=np.ones(n), bounds=(0, 1), method="highs")
    return res.fun


@pytest.mark.parametrize("seed", range(5))
def test_rounding_is_optimal_and_meets_bounds(seed):
    rng = np.random.default_rng(seed)
    n, k = 60, 4
    cost = rng.random((n, k)) * np.array([1.0, 2.0, 0.5, 3.0])  # skewed: unconstrained argmin is unbalanced
    lo, hi = np.array([10, 12, 5, 14]), np.array([20, 18, 25, 16])
    labels = round_to_sizes(cost, lo, hi)
    sizes = np.bincount(labels, minlength=k)
    assert np.all(sizes >= lo) and np.all(sizes <= hi)
    assert cost[np.arange(n), labels].sum() == pytest.approx(lp_optimum(cost, lo, hi), abs=n * 3.0 / 1e7 + 1e-9)


def test_loose_bounds_give_argmin():
    cost = np.random.default_rng(0).random((30, 3))
    labels = round_to_sizes(cost, np.zeros(3, int), np.full(3, 30))
    np.testing.assert_array_equal(labels, cost.argmin(1))


def test_integer_size_bounds_fractions_and_counts():
    lo, hi = integer_size_bounds(0.3, 0.36, 150, 3)
    np.testing.assert_array_equal(lo, [45, 45, 45])
    np.testing.assert_array_equal(hi, [54, 54, 54])
    lo, hi = integer_size_bounds([1, 2, 3], None, 10, 3)
    np.testing.assert_array_equal(lo, [1, 2, 3])
    np.testing.assert_array_equal(hi, [10, 10, 10])
    lo, hi = integer_size_bounds(0.25, 0.5, 10, 3)  # 2.5 → 3 (ceil), 5 → 5
    np.testing.assert_array_equal(lo, [3, 3, 3])
    np.testing.assert_array_equal(hi, [5, 5, 5])


@pytest.mark.parametrize("size_min,size_max,match", [
    (0.4, None, "minimum sizes add up to 60 > n_samples=50"),
    (None, 0.3, "maximum sizes add up to 45 < n_samples=50"),
    (20, 10, "size_min exceeds size_max"),
    ([1, 2], None, "one value per cluster"),
])
def test_infeasible_bounds_raise(size_min, size_max, match):
    with pytest.raises(ValueError, match=match):
        integer_size_bounds(size_min, size_max, 50, 3)


def test_round_rejects_nonfinite_cost():
    with pytest.raises(ValueError, match="NaN or inf"):
        round_to_sizes(np.array([[0.0, np.inf]]), np.zeros(2, int), np.ones(2, int))
