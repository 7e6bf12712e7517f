"""A long-tailed dataset of your own, as a LightningDataModule otcls can train and test.

The data is one ``.npz`` file:

- ``train_images`` (N, H, W) uint8 and ``train_labels`` (N,) int in [0, C): the (long-tailed) training set;
- for every test set ``<name>``: ``test_<name>_images`` and ``test_<name>_labels`` — e.g. a balanced set and one
  with the class mix you expect after deployment.

otcls reads four things from the DataModule: ``num_classes`` and ``class_counts`` (the head, the re-weighted
losses and the priors need them), ``test_variants`` (the test sets, one test loader each, in that order) and
``test_prior(name)`` (the class distribution of a test set, the "known" prior of OT inference).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


class NpzDataModule(L.LightningDataModule):
    """Train / validation / test sets from one ``.npz`` file.

    Args:
        path: the ``.npz`` file.
        batch_size: training batch size (evaluation uses the same).
        val_per_class: images of every class held out of training for validation (model selection);
            a class keeps at least one training image.
        seed: seeds the validation hold-out.
    """

    def __init__(self, path: str, batch_size: int = 64, val_per_class: int = 2, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1 or val_per_class < 0:
            raise ValueError(f"batch_size must be >= 1 and val_per_class >= 0; got {batch_size}, {val_per_class}")
        self.path, self.batch_size, self.val_per_class, self.seed = path, batch_size, val_per_class, seed
        self.num_classes: int = 0
        self.class_counts: Optional[List[int]] = None
        self.test_variants: Tuple[str, ...] = ()
        self._sets: dict = {}

    def setup(self, stage: Optional[str] = None) -> None:
        if self._sets:
            return
        with np.load(self.path) as data:
            arrays = {key: data[key] for key in data.files}
        self.test_variants = tuple(sorted(k[len("test_"):-len("_images")] for k in arrays
                                          if k.startswith("test_") and k.endswith("_images")))
        if "train_images" not in arrays or not self.test_variants:
            raise ValueError(f"{self.path} needs train_images / train_labels and at least one test_<name>_images / "
                             f"test_<name>_labels; it has {sorted(arrays)}")
        x, y = self._tensors(arrays["train_images"], arrays["train_labels"])
        if len(y) == 0 or int(y.min()) < 0:
            raise ValueError(f"{self.path}: train_labels must be class indices 0 … C-1 (got {len(y)} labels, "
                             f"smallest {int(y.min()) if len(y) else None})")
        self.num_classes = int(y.max()) + 1
        train, val = self._hold_out(y)
        self.class_counts = torch.bincount(y[train], minlength=self.num_classes).tolist()
        self._sets["train"] = TensorDataset(x[train], y[train])
        self._sets["val"] = TensorDataset(x[val], y[val])
        for name in self.test_variants:
            if f"test_{name}_labels" not in arrays:
                raise ValueError(f"{self.path} has test_{name}_images but no test_{name}_labels")
            tx, ty = self._tensors(arrays[f"test_{name}_images"], arrays[f"test_{name}_labels"])
            if len(ty) and (int(ty.min()) < 0 or int(ty.max()) >= self.num_classes):
                # checked here, at setup, before training: the test loop would fail only after the whole fit
                raise ValueError(f"{self.path}: test_{name}_labels range over [{int(ty.min())}, {int(ty.max())}] but "
                                 f"the training labels define classes 0 … {self.num_classes - 1}")
            # the sample index lets otcls count every test image once under DDP
            self._sets[name] = TensorDataset(tx, ty, torch.arange(len(ty)))

    def _tensors(self, images: np.ndarray, labels: np.ndarray) -> tuple:
        x = torch.as_tensor(images, dtype=torch.float32).div(255.0).unsqueeze(1)  # (N, 1, H, W) in [0, 1]
        return (x - 0.5) / 0.5, torch.as_tensor(labels, dtype=torch.long)

    def _hold_out(self, y: torch.Tensor) -> tuple:
        g = torch.Generator().manual_seed(self.seed)
        val = []
        for c in range(self.num_classes):
            idx = torch.nonzero(y == c).flatten()
            if len(idx) == 0:
                raise ValueError(f"class {c} has no training image in {self.path}; every class needs one")
            val.append(idx[torch.randperm(len(idx), generator=g)[:min(self.val_per_class, len(idx) - 1)]])
        val_idx = torch.cat(val)
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[val_idx] = False
        return torch.nonzero(keep).flatten(), val_idx

    def test_prior(self, name: str) -> torch.Tensor:
        """Class distribution of test set ``name`` (sums to 1)."""
        counts = torch.bincount(self._sets[name].tensors[1], minlength=self.num_classes).double()
        return (counts / counts.sum()).float()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._sets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._sets["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> List[DataLoader]:
        return [DataLoader(self._sets[name], batch_size=self.batch_size) for name in self.test_variants]

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self._sets[self.test_variants[0]], batch_size=self.batch_size)
