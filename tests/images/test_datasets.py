"""The real loaders on tiny files in the official on-disk formats."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from otcls.data import CIFAR10LTDataModule, CIFAR100LTDataModule, FashionMNISTLTDataModule, ImageNetLTDataModule
from otcls.data.fashion_mnist import prepare_root
from otcls.data.longtail import longtail_counts
from otcls.data.transforms import CIFAR_MEAN, CIFAR_STD


def test_fashion_mnist_idx_roundtrip(fmnist_root, tmp_path):
    dm = FashionMNISTLTDataModule(root=fmnist_root, imbalance_factor=10, val_fraction=0.1, augment="none",
                                  seed=1)
    dm.setup()
    full = longtail_counts(60, 10, 10)
    val = [max(1, round(0.1 * n)) for n in full]
    assert dm.class_counts == [n - v for n, v in zip(full, val)]
    assert len(dm.split("val")) == sum(val)
    assert len(dm.split("test/balanced")) == 120
    assert [len(dm.split(f"test/{v}")) for v in ("lt", "reverse_lt")] == [sum(longtail_counts(12, 10, 10))] * 2
    # pixels decoded by torchvision equal the bytes we wrote (idx header: 16 bytes)
    with gzip.open(os.path.join(fmnist_root, "train-images-idx3-ubyte.gz")) as fh:
        raw = np.frombuffer(fh.read()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    sub = dm.split("train")
    x, y = sub[0]
    expected = (torch.from_numpy(raw[sub.indices[0]].copy()).float() / 255 - 0.2860) / 0.3530
    assert torch.allclose(x[0], expected, atol=1e-5)
    prior = dm.test_prior("lt")
    assert torch.isclose(prior.sum(), torch.tensor(1.0)) and prior[0] > prior[-1]


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        prepare_root(str(tmp_path / "nothing"), sources=())


def _cifar_first_image(folder, name, key):
    with open(os.path.join(folder, name), "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    return entry["data"], entry[key]


def test_cifar10_pickled_batches(cifar10_root):
    dm = CIFAR10LTDataModule(root=cifar10_root, imbalance_factor=10, val_fraction=0.0, augment="none")
    dm.setup()
    assert dm.class_counts == longtail_counts(50, 10, 10)
    data, labels = _cifar_first_image(os.path.join(cifar10_root, "cifar-10-batches-py"), "test_batch", "labels")
    test = dm.split("test/balanced")
    x, y, k = test[0]
    img = torch.from_numpy(data[test.indices[0]].reshape(3, 32, 32)).float() / 255
    expected = (img - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]
    assert y == labels[test.indices[0]] and k == 0
    assert torch.allclose(x, expected, atol=1e-5)


def test_cifar100_fine_labels(cifar100_root):
    dm = CIFAR100LTDataModule(root=cifar100_root, imbalance_factor=5, val_fraction=0.0)
    dm.setup()
    assert len(dm.class_counts) == 100 and dm.class_counts == longtail_counts(5, 100, 5)
    x, y = dm.split("train")[0]
    assert x.shape == (3, 32, 32)


def test_cifar_missing_batches_error(tmp_path):
    dm = CIFAR10LTDataModule(root=str(tmp_path))
    with pytest.raises(ValueError, match="download: true"):
        dm.setup()


def test_imagenet_lt_lists(imagenet_lt_root):
    dm = ImageNetLTDataModule(root=imagenet_lt_root, num_classes=4, image_size=16, augment="none")
    dm.setup()
    assert dm.class_counts == [8, 5, 3, 2]  # list used as is; its own val list is the validation split
    assert len(dm.split("val")) == 4 and len(dm.split("test/balanced")) == 12
    x, y = dm.split("train")[0]
    assert x.shape == (3, 16, 16) and y == 0


def test_imagenet_lt_bad_list_line(imagenet_lt_root, tmp_path):
    for split in ("train", "val", "test"):
        (tmp_path / f"ImageNet_LT_{split}.txt").write_text("train/x.JPEG notalabel\n")
    dm = ImageNetLTDataModule(root=imagenet_lt_root, list_dir=str(tmp_path), num_classes=4)
    with pytest.raises(ValueError, match="expected '<relative image path> <integer label>'"):
        dm.setup()
    with pytest.raises(ValueError, match="ImageNet_LT_train.txt not found"):
        ImageNetLTDataModule(root=str(tmp_path / "none"), num_classes=4).setup()
