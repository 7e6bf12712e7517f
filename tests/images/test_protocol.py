"""The standard Fashion-MNIST-LT protocol: profile size, held-out validation, full and shifted test sets."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from otcls.data import FashionMNISTLTDataModule
from otcls.data.base import TensorSubset, TransformSubset
from otcls.data.fashion_mnist import DEBIAN_DIR
from otcls.data.longtail import holdout_per_class, longtail_counts
from otcls.data.transforms import FMNIST_MEAN, FMNIST_STD, small_image_eval

HAVE_FMNIST = os.path.isfile(os.path.join(DEBIAN_DIR, "train-images-idx3-ubyte.gz"))


def test_standard_profile_has_14886_images():
    counts = longtail_counts(6000, 10, 100)
    assert counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert sum(counts) == 14886
    assert sum(longtail_counts(1000, 10, 100)) == 2478  # LT / reverse-LT test sets from 1,000 test images a class


def test_holdout_takes_only_spare_images():
    targets = np.repeat(np.arange(3), [5, 4, 3])
    used = np.array([0, 1, 2, 3, 4, 5, 9])  # class 0 fully used, class 1 has 3 spare, class 2 has 2
    val, short = holdout_per_class(targets, used, 3, 3, seed=0)
    assert not set(val) & set(used)
    assert np.bincount(targets[val], minlength=3).tolist() == [0, 3, 2]
    assert short == [0, 2]
    again, _ = holdout_per_class(targets, used, 3, 3, seed=0)
    assert np.array_equal(val, again)
    with pytest.raises(ValueError, match="val_per_class must be >= 1"):
        holdout_per_class(targets, used, 0, 3, seed=0)


def test_tensor_subset_equals_torchvision_transform(fmnist_root):
    dm = FashionMNISTLTDataModule(root=fmnist_root, imbalance_factor=10, augment="none")
    base, _ = dm.load_split("train")
    idx = np.array([3, 17, 42])
    fast = TensorSubset(base.data, base.targets.numpy(), idx, FMNIST_MEAN, FMNIST_STD, with_index=True)
    slow = TransformSubset(base, idx, small_image_eval(FMNIST_MEAN, FMNIST_STD), with_index=True)
    x, y, k = fast.__getitems__([0, 1, 2])
    assert torch.allclose(x, torch.stack([slow[i][0] for i in range(3)]), atol=1e-6)
    assert y.tolist() == [slow[i][1] for i in range(3)] and k.tolist() == [0, 1, 2]


@pytest.mark.skipif(not HAVE_FMNIST and bool(os.environ.get("OTCLS_ALLOW_MISSING_DATA")),
                    reason="OTCLS_ALLOW_MISSING_DATA is set and dataset-fashion-mnist is not installed")
def test_fashion_mnist_lt_standard_protocol(tmp_path):
    def build(seed):
        dm = FashionMNISTLTDataModule(root=str(tmp_path), n_max=6000, imbalance_factor=100, val_per_class=100,
                                      augment="none", seed=seed)
        dm.setup()
        return dm

    dm = build(0)
    # the standard profile, except the head class: its 6,000 images minus the 100 held out for validation
    assert dm.class_counts == [5900] + longtail_counts(6000, 10, 100)[1:] and sum(dm.class_counts) == 14786
    assert dm.capped_classes == [0]
    train, val = dm.split("train").indices, dm.split("val").indices
    assert not set(train.tolist()) & set(val.tolist())  # validation never overlaps the training subset
    val_labels = dm.split("val").y.numpy()
    assert np.bincount(val_labels, minlength=10).tolist() == [100] * 10  # balanced over every class
    assert len(dm.split("test/balanced")) == 10000  # the full test set
    lt, rev = dm.split("test/lt"), dm.split("test/reverse_lt")
    assert len(lt) == len(rev) == 2478
    assert np.bincount(lt.y.numpy(), minlength=10).tolist() == longtail_counts(1000, 10, 100)
    assert np.bincount(rev.y.numpy(), minlength=10).tolist() == longtail_counts(1000, 10, 100)[::-1]
    assert torch.allclose(dm.test_prior("reverse_lt"), dm.test_prior("lt").flip(0))
    same, other = build(0), build(1)
    assert np.array_equal(same.split("train").indices, train)
    assert np.array_equal(same.split("test/lt").indices, lt.indices)
    assert not np.array_equal(other.split("train").indices, train)
    assert not np.array_equal(other.split("test/lt").indices, lt.indices)


def test_a_class_without_training_images_is_an_error(fmnist_root):
    # 60 images a class, IF 1000: int(60 · 1000^(-i/9)) = 0 for classes 6-9
    dm = FashionMNISTLTDataModule(root=fmnist_root, n_max=60, imbalance_factor=1000, augment="none")
    with pytest.raises(ValueError, match=r"classes \[6, 7, 8, 9\] get no training image"):
        dm.setup()
