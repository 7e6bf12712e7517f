"""CIFAR10-LT / CIFAR100-LT from the python pickled batches (``cifar-10-batches-py`` / ``cifar-100-python``).

torchvision downloads (``download: true``) and defines the file names; the batches are read
here so that any copy in the official layout works (torchvision's loader also md5-checks).
"""
from __future__ import annotations

import os
import pickle
from typing import Callable, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from otcls.data.base import LongTailDataModule
from otcls.data.transforms import CIFAR_MEAN, CIFAR_STD, small_image_eval, small_image_train


class CIFARBatches(Dataset):
    """Images (N,32,32,3 uint8) and labels read from official pickled batch files; items are ``(PIL, label)``."""

    def __init__(self, folder: str, files: list, label_key: str) -> None:
        data, labels = [], []
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            if "data" not in entry or label_key not in entry:
                raise ValueError(f"{path} is not a CIFAR batch: expected keys 'data' and '{label_key}'")
            data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry[label_key])
        self.data = np.concatenate(data).transpose(0, 2, 3, 1)
        self.targets = np.asarray(labels, dtype=np.int64)
        if len(self.targets) != len(self.data):
            raise ValueError(f"{folder}: {len(self.data)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        return Image.fromarray(self.data[i]), int(self.targets[i])


class CIFAR10LTDataModule(LongTailDataModule):
    """CIFAR10-LT (``n_i = int(5000 · IF^(-i/9))``; IF 100 → 12,406 images before the validation split)."""

    num_classes = 10
    tv_class = CIFAR10
    label_key = "labels"

    def __init__(self, root: str = "data/cifar", download: bool = False, **kwargs) -> None:
        super().__init__(root=root, **kwargs)
        self.download = download

    def _folder(self) -> str:
        return os.path.join(self.root, self.tv_class.base_folder)

    def _missing(self) -> list:
        names = [n for n, _ in self.tv_class.train_list + self.tv_class.test_list]
        return [n for n in names if not os.path.isfile(os.path.join(self._folder(), n))]

    def prepare_data(self) -> None:
        if self._missing() and self.download:
            self.tv_class(self.root, train=True, download=True)
        missing = self._missing()
        if missing:
            raise ValueError(f"{self.tv_class.__name__} batches {missing} not found in '{self._folder()}'. "
                             f"Set data.init_args.download: true (needs network) or unpack "
                             f"{self.tv_class.url} into data.init_args.root.")

    def load_split(self, split: str) -> Optional[Tuple[CIFARBatches, np.ndarray]]:
        if split == "val":
            return None
        self.prepare_data()
        files = self.tv_class.train_list if split == "train" else self.tv_class.test_list
        ds = CIFARBatches(self._folder(), [n for n, _ in files], self.label_key)
        return ds, ds.targets

    def train_transform(self) -> Callable:
        return small_image_train(32, 4, CIFAR_MEAN, CIFAR_STD, self.augment)

    def eval_transform(self) -> Callable:
        return small_image_eval(CIFAR_MEAN, CIFAR_STD)


class CIFAR100LTDataModule(CIFAR10LTDataModule):
    """CIFAR100-LT (``n_i = int(500 · IF^(-i/99))``; IF 100 → 10,847 images before the validation split)."""

    num_classes = 100
    tv_class = CIFAR100
    label_key = "fine_labels"
