"""ImageNet-LT (Liu et al. 2019): ``ImageNet_LT_{train,val,test}.txt`` lists over an ImageNet image root.

Each list line is ``relative/path.JPEG label``; the train list is already long-tailed
(1,280 … 5 images per class, 1,000 classes), val has 20 and test 50 images per class.
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader

from otcls.data.base import LongTailDataModule
from otcls.data.transforms import imagenet_eval, imagenet_train


def read_list(path: str) -> Tuple[List[str], np.ndarray]:
    """Parse an ImageNet-LT list file into (relative paths, labels)."""
    paths, labels = [], []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected '<relative image path> <integer label>', got {line!r}")
            paths.append(parts[0])
            labels.append(int(parts[1]))
    return paths, np.asarray(labels, dtype=np.int64)


class ImageList(Dataset):
    """Images named by a list file, loaded with torchvision's default (PIL, RGB) loader."""

    def __init__(self, root: str, paths: List[str], labels: np.ndarray) -> None:
        self.root, self.paths, self.targets = root, paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return default_loader(os.path.join(self.root, self.paths[i])), int(self.targets[i])


class ImageNetLTDataModule(LongTailDataModule):
    """ImageNet-LT; ``list_dir`` holds the three list files (default: ``root``)."""

    def __init__(self, root: str = "data/imagenet", list_dir: Optional[str] = None, num_classes: int = 1000,
                 image_size: int = 224, imbalance_factor: Optional[float] = None, **kwargs) -> None:
        super().__init__(root=root, imbalance_factor=imbalance_factor, **kwargs)
        self.list_dir, self.num_classes, self.image_size = list_dir or root, num_classes, image_size

    def _list(self, split: str) -> str:
        path = os.path.join(self.list_dir, f"ImageNet_LT_{split}.txt")
        if not os.path.isfile(path):
            raise ValueError(f"{path} not found: download the ImageNet-LT lists (ImageNet_LT_train/val/test.txt, "
                             f"Liu et al. 2019) into data.init_args.list_dir and the ImageNet-2012 images into data.init_args.root "
                             f"(make imagenet-lt: LIST_DIR=... and DATA_ROOT=...).")
        return path

    def load_split(self, split: str) -> Optional[Tuple[ImageList, np.ndarray]]:
        paths, labels = read_list(self._list(split))
        missing = [p for p in paths[:1] + paths[-1:] if not os.path.isfile(os.path.join(self.root, p))]
        if missing:
            raise ValueError(f"image {missing[0]} of ImageNet_LT_{split}.txt not found under root '{self.root}'")
        return ImageList(self.root, paths, labels), labels

    def train_transform(self) -> Callable:
        return imagenet_train(self.image_size, self.augment)

    def eval_transform(self) -> Callable:
        return imagenet_eval(self.image_size)
