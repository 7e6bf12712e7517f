"""CIFAR10-LT / CIFAR100-LT from the python pickled batches (``cifar-10-batches-py`` / ``cifar-100-python``).

torchvision downloads (``download: true``) and defines the file names; the batches are read
here so that any copy in the official layout works (torchvision's loader also md5-checks).
"""
from __future__ import annotations

import os
import pickle
import urllib.error
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from otcls.data.base import LongTailDataModule
from otcls.data.transforms import CIFAR_MEAN, CIFAR_STD


def read_batch(path: str, label_key: str) -> Tuple[np.ndarray, List[int]]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of one official pickled batch; a file that is not one (truncated,
    corrupted, other keys, a label count that differs from the image count) raises naming the file."""
    redo = "delete it and download again (data.init_args.download: true) or unpack the official archive again"
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, MemoryError, UnicodeDecodeError) as e:
        size = os.path.getsize(path)
        raise ValueError(f"{path} ({size} bytes) is not a readable CIFAR batch (truncated or corrupted: "
                         f"{type(e).__name__}: {e}); {redo}") from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"{path} is not a CIFAR batch: expected keys 'data' and '{label_key}', found {keys}; {redo}")
    data, labels = np.asarray(entry["data"]), list(entry[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must be uint8 rows of 3072 pixels, got {data.dtype} {data.shape}; {redo}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels in '{label_key}'; {redo}")
    return data.reshape(-1, 3, 32, 32), labels


class CIFARBatches(Dataset):
    """Images (N,32,32,3 uint8) and labels read from official pickled batch files; items are ``(PIL, label)``."""

    def __init__(self, folder: str, files: list, label_key: str) -> None:
        parts = [read_batch(os.path.join(folder, name), label_key) for name in files]
        self.data = np.concatenate([d for d, _ in parts]).transpose(0, 2, 3, 1)
        self.targets = np.asarray([y for _, labels in parts for y in labels], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        return Image.fromarray(self.data[i]), int(self.targets[i])


class CIFAR10LTDataModule(LongTailDataModule):
    """CIFAR10-LT (``n_i = int(5000 · IF^(-i/9))``; IF 100 → 12,406 images before the validation split)."""

    num_classes = 10
    image_size, crop_padding, mean, std = 32, 4, CIFAR_MEAN, CIFAR_STD
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
        failure = ""
        if self._missing() and self.download:
            try:
                self.tv_class(self.root, train=True, download=True)
            except (urllib.error.URLError, OSError, RuntimeError) as exc:  # no network, a bad archive
                failure = f" ({type(exc).__name__}: {exc})"
        missing = self._missing()
        if missing:
            how = (f"download is on but it failed{failure or ' to provide them'} (no network here?): "
                   if self.download else "set data.init_args.download: true (needs network) or ")
            raise ValueError(f"{self.tv_class.__name__} batches {missing} not found in '{self._folder()}'; "
                             f"{how}unpack {self.tv_class.url} into data.init_args.root "
                             f"(it must contain {self.tv_class.base_folder}/).")

    def load_split(self, split: str) -> Optional[Tuple[CIFARBatches, np.ndarray]]:
        if split == "val":
            return None
        self.prepare_data()
        files = self.tv_class.train_list if split == "train" else self.tv_class.test_list
        ds = CIFARBatches(self._folder(), [n for n, _ in files], self.label_key)
        return ds, ds.targets

    def memory_arrays(self, base: CIFARBatches) -> Tuple[torch.Tensor, np.ndarray]:
        return torch.from_numpy(base.data), base.targets


class CIFAR100LTDataModule(CIFAR10LTDataModule):
    """CIFAR100-LT (``n_i = int(500 · IF^(-i/99))``; IF 100 → 10,847 images before the validation split)."""

    num_classes = 100
    tv_class = CIFAR100
    label_key = "fine_labels"
