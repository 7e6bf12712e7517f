"""Long-tail profiles, subsampling, splits, test variants and shot groups against hand-checked values."""
import numpy as np
import pytest

from otcls.data.longtail import (class_counts, longtail_counts, shot_groups, stratified_split, subsample_per_class,
                                 prior_variant_indices)


def test_standard_profile_sizes():
    # the published CIFAR-LT sizes (Cao et al. 2019): IF 100 → 12,406 and 10,847 training images
    assert sum(longtail_counts(5000, 10, 100)) == 12406
    assert sum(longtail_counts(500, 100, 100)) == 10847
    c = longtail_counts(5000, 10, 100)
    assert c[0] == 5000 and c[-1] == 50 and c[1] == int(5000 * 100 ** (-1 / 9))
    assert longtail_counts(5000, 10, 10)[-1] == 500 and longtail_counts(5000, 10, 200)[-1] == 25
    assert longtail_counts(100, 4, 8, reverse=True) == [12, 25, 50, 100]


@pytest.mark.parametrize("bad,message", [(dict(n_max=0, num_classes=3, imbalance_factor=2), "n_max must be >= 1, got 0"),
                                         (dict(n_max=10, num_classes=0, imbalance_factor=2), "num_classes must be >= 1, got 0"),
                                         (dict(n_max=10, num_classes=3, imbalance_factor=0.5),
                                          r"imbalance_factor must be >= 1 \(n_max / n_min\), got 0.5")])
def test_profile_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        longtail_counts(**bad)


def test_subsample_exact_counts_and_seeded():
    targets = np.repeat(np.arange(3), 20)
    a = subsample_per_class(targets, [20, 7, 2], seed=3)
    b = subsample_per_class(targets, [20, 7, 2], seed=3)
    assert np.array_equal(a, b)
    assert np.bincount(targets[a]).tolist() == [20, 7, 2]
    assert not np.array_equal(a, subsample_per_class(targets, [20, 7, 2], seed=4))
    with pytest.raises(ValueError, match="class 1 has 20 samples"):
        subsample_per_class(targets, [1, 21, 1], seed=0)


def test_stratified_split_disjoint_and_covers_tail():
    targets = np.repeat(np.arange(4), [50, 20, 5, 2])
    tr, va = stratified_split(targets, 0.1, seed=0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(targets)
    assert np.bincount(targets[va], minlength=4).tolist() == [5, 2, 1, 1]  # tail classes keep one val image
    assert np.bincount(targets[tr], minlength=4).tolist() == [45, 18, 4, 1]


def test_test_variants_follow_profile():
    targets = np.repeat(np.arange(5), 40)
    v = prior_variant_indices(targets, 5, 10, seed=0)
    assert len(v["balanced"]) == 200
    assert np.bincount(targets[v["lt"]], minlength=5).tolist() == longtail_counts(40, 5, 10)
    assert np.bincount(targets[v["reverse_lt"]], minlength=5).tolist() == longtail_counts(40, 5, 10)[::-1]


def test_shot_groups_thresholds_and_empty_group():
    g = shot_groups([500, 101, 100, 20, 19, 1])
    assert g == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    assert shot_groups(longtail_counts(5000, 10, 100))["few"] == []  # CIFAR10-LT has no few-shot class


def test_class_counts_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        class_counts([0, 1, 3], 3)
