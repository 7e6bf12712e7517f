"""Tiny datasets written in the real on-disk formats (idx.gz, CIFAR pickled batches, ImageNet-LT lists + JPEGs)."""
from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("WANDB_MODE", "disabled")


def write_idx_images(path: str, images: np.ndarray) -> None:
    """idx3-ubyte: magic 2051, n, rows, cols (big-endian int32), then uint8 pixels; gzipped."""
    n, r, c = images.shape
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, n, r, c) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: str, labels: np.ndarray) -> None:
    """idx1-ubyte: magic 2049, n, then uint8 labels; gzipped."""
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def class_images(per_class: int, num_classes: int, rng: np.random.Generator, shape: tuple) -> tuple:
    """uint8 images whose mean intensity encodes the class (learnable); labels in class order."""
    labels = np.repeat(np.arange(num_classes), per_class)
    imgs = rng.integers(0, 40, size=(len(labels), *shape)) + (labels * 20).reshape(-1, *([1] * len(shape)))
    return np.clip(imgs, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("fmnist"))
    rng = np.random.default_rng(0)
    for prefix, per in (("train", 60), ("t10k", 12)):
        imgs, labels = class_images(per, 10, rng, (28, 28))
        perm = rng.permutation(len(labels))
        write_idx_images(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), imgs[perm])
        write_idx_labels(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), labels[perm])
    return root


def write_cifar(root: str, num_classes: int, per_class_train: int, per_class_test: int, seed: int = 0) -> str:
    """``cifar-10-batches-py`` (5 data batches + test_batch + batches.meta) or ``cifar-100-python`` (train/test/meta)."""
    rng = np.random.default_rng(seed)
    c100 = num_classes == 100
    folder = os.path.join(root, "cifar-100-python" if c100 else "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    key = "fine_labels" if c100 else "labels"

    def dump(name: str, per: int, chunks: int) -> None:
        labels = np.repeat(np.arange(num_classes), per)
        data = rng.integers(0, 256, size=(len(labels), 3 * 32 * 32), dtype=np.uint8)
        for i, part in enumerate(np.array_split(rng.permutation(len(labels)), chunks)):
            entry = {"batch_label": f"{name} {i}", key: labels[part].tolist(), "data": data[part],
                     "filenames": [f"img_{j}.png" for j in part]}
            if c100:
                entry["coarse_labels"] = (labels[part] // 5).tolist()
            fname = name if chunks == 1 else f"{name}_{i + 1}"
            with open(os.path.join(folder, fname), "wb") as fh:
                pickle.dump(entry, fh)

    if c100:
        dump("train", per_class_train, 1)
        dump("test", per_class_test, 1)
        meta = {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": [f"s{i}" for i in range(20)]}
        with open(os.path.join(folder, "meta"), "wb") as fh:
            pickle.dump(meta, fh)
    else:
        dump("data_batch", per_class_train, 5)
        dump("test_batch", per_class_test, 1)
        with open(os.path.join(folder, "batches.meta"), "wb") as fh:
            pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, fh)
    return folder


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("cifar10"))
    write_cifar(root, 10, 50, 6)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("cifar100"))
    write_cifar(root, 100, 5, 2)
    return root


@pytest.fixture(scope="session")
def imagenet_lt_root(tmp_path_factory) -> str:
    return write_imagenet_lt(str(tmp_path_factory.mktemp("imagenet_lt")))


def write_imagenet_lt(root: str) -> str:
    """4 classes, long-tailed train list (8, 5, 3, 2), val 1 and test 3 per class, 16×16 JPEGs."""
    rng = np.random.default_rng(0)
    sizes = {"train": [8, 5, 3, 2], "val": [1, 1, 1, 1], "test": [3, 3, 3, 3]}
    for split, counts in sizes.items():
        lines = []
        for c, n in enumerate(counts):
            wnid = f"n0000000{c}"
            os.makedirs(os.path.join(root, split, wnid), exist_ok=True)
            for k in range(n):
                rel = f"{split}/{wnid}/{wnid}_{k}.JPEG"
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(os.path.join(root, rel), "JPEG")
                lines.append(f"{rel} {c}")
        with open(os.path.join(root, f"ImageNet_LT_{split}.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return root
