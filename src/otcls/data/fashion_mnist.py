"""Fashion-MNIST-LT, the offline default benchmark (10 classes, 28×28 grey images)."""
from __future__ import annotations

import os
import urllib.error
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.datasets import FashionMNIST
from torchvision.datasets.utils import extract_archive

from otcls.data.base import LongTailDataModule
from otcls.data.transforms import FMNIST_MEAN, FMNIST_STD

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def prepare_root(root: str, sources: Sequence[str] = (DEBIAN_DIR,)) -> str:
    """Make ``root/FashionMNIST/raw/`` hold the four idx files torchvision reads.

    Already there → nothing to do. Otherwise the ``.gz`` (or plain) idx files are taken from
    ``root`` itself or from ``sources`` (the Debian package dir) and decompressed into ``raw/``.
    Returns the raw directory; raises ValueError saying how to get the data when none is found.
    """
    raw = os.path.join(root, "FashionMNIST", "raw")
    if all(os.path.isfile(os.path.join(raw, f)) for f in IDX_FILES):
        return raw
    for src in (root, *sources):
        if all(os.path.isfile(os.path.join(src, f)) or os.path.isfile(os.path.join(src, f + ".gz")) for f in IDX_FILES):
            os.makedirs(raw, exist_ok=True)
            for f in IDX_FILES:
                if os.path.isfile(os.path.join(src, f + ".gz")):
                    extract_archive(os.path.join(src, f + ".gz"), raw)
                else:
                    os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(raw, f))
            return raw
    raise ValueError(
        f"Fashion-MNIST not found in '{root}' or {list(sources)}. Get it with "
        f"'sudo apt-get install dataset-fashion-mnist' (files in {DEBIAN_DIR}), put the four idx(.gz) files "
        f"in data.root, or set data.download: true to fetch them with torchvision.")


class FashionMNISTLTDataModule(LongTailDataModule):
    """Fashion-MNIST-LT. Files come from ``root``, else ``system_dir`` (the Debian package's folder);
    ``download=True`` lets torchvision fetch them when neither has a copy.

    Evaluation splits, and the training split with ``augment="none"``, are served from memory as
    normalised tensors (:class:`otcls.data.base.TensorSubset`), a batch per index operation;
    ``pipeline: device`` augments the training batches on the device.
    """

    num_classes = 10
    image_size, crop_padding, mean, std = 28, 2, FMNIST_MEAN, FMNIST_STD

    def __init__(self, root: str = "data/fashion-mnist", download: bool = False, system_dir: str = DEBIAN_DIR,
                 **kwargs) -> None:
        super().__init__(root=root, **kwargs)
        self.download, self.system_dir = download, system_dir

    def prepare_data(self) -> None:
        try:
            prepare_root(self.root, sources=(self.system_dir,))
        except ValueError as missing:
            if not self.download:
                raise
            try:
                FashionMNIST(self.root, train=True, download=True)
                FashionMNIST(self.root, train=False, download=True)
            except (urllib.error.URLError, OSError, RuntimeError) as exc:  # no network, a bad archive
                raise ValueError(f"Fashion-MNIST not found in '{self.root}' or '{self.system_dir}', and download is "
                                 f"on but it failed ({type(exc).__name__}: {exc}; no network here?). Get it with "
                                 f"'sudo apt-get install dataset-fashion-mnist' or put the four idx(.gz) files in "
                                 f"data.root.") from missing

    def load_split(self, split: str) -> Optional[Tuple[FashionMNIST, np.ndarray]]:
        if split == "val":
            return None
        self.prepare_data()
        ds = FashionMNIST(self.root, train=(split == "train"))
        return ds, ds.targets.numpy()

    def memory_arrays(self, base: FashionMNIST) -> Tuple[torch.Tensor, np.ndarray]:
        return base.data, base.targets.numpy()
