"""A tiny offline LVIS-format set generated from idx files written here in the Fashion-MNIST format."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")


def write_idx(path: str, array: np.ndarray) -> None:
    """idx-ubyte file, gzipped: magic 0x0000 0x08 ndim, big-endian int32 sizes, uint8 data."""
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                 + array.astype(np.uint8).tobytes())


def blob_items(per_class: int, num_classes: int, rng: np.random.Generator) -> tuple:
    """28×28 filled ellipses whose aspect ratio depends on the class."""
    yy, xx = np.mgrid[:28, :28] - 13.5
    images, labels = [], []
    for c in range(num_classes):
        ry, rx = 6 + c, 16 - c
        for _ in range(per_class):
            inside = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0
            images.append((inside * rng.integers(150, 255)).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels, dtype=np.uint8)


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        x, y = blob_items(4, 10, rng)
        write_idx(str(root / f"{prefix}-images-idx3-ubyte.gz"), x)
        write_idx(str(root / f"{prefix}-labels-idx1-ubyte.gz"), y)
    return str(root)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory, fmnist_root) -> str:
    from otcls.data.lvis_synth import make_lvis_demo

    root = str(tmp_path_factory.mktemp("lvis_demo"))
    make_lvis_demo(root, fmnist_root=fmnist_root, train_images=60, val_images=12, canvas=64, max_items=2,
                   imbalance=10.0, min_size=16, max_size=28, seed=1)
    return root
