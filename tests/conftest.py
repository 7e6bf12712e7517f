"""Fixtures shared across test folders."""
from __future__ import annotations

import os

import numpy as np
import pytest

from .images.conftest import class_images, write_idx_images, write_idx_labels


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> str:
    """Fashion-MNIST in the real idx.gz format: 60 train and 12 test images per class, in class order
    (``tests/images`` overrides it with a shuffled variant)."""
    root = str(tmp_path_factory.mktemp("fm"))
    rng = np.random.default_rng(0)
    for prefix, per in (("train", 60), ("t10k", 12)):
        imgs, labels = class_images(per, 10, rng, (28, 28))
        write_idx_images(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), imgs)
        write_idx_labels(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), labels)
    return root
