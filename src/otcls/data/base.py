"""Generic long-tailed image DataModule: imbalance, validation split, test-prior variants.

A subclass says how to read one split (:meth:`LongTailDataModule.load_split`) and which
transforms to use; this class owns everything long-tail specific, seeded so every run with
the same ``seed`` sees the same images.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from otcls.data.longtail import (PRIOR_VARIANTS, class_counts, longtail_counts, shot_groups,
                                  stratified_split, subsample_per_class, prior_variant_indices)


class TransformSubset(Dataset):
    """``base[indices[k]]`` with ``transform`` applied to the image (the base returns untransformed images).

    ``with_index=True`` yields ``(image, label, k)`` so evaluation can drop the duplicates that a
    distributed sampler pads in.
    """

    def __init__(self, base: Dataset, indices: Sequence[int], transform: Optional[Callable] = None,
                 with_index: bool = False) -> None:
        self.base, self.indices, self.transform = base, np.asarray(indices, dtype=np.int64), transform
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple:
        img, target = self.base[int(self.indices[k])]
        img = self.transform(img) if self.transform is not None else img
        return (img, int(target), k) if self.with_index else (img, int(target))


class LongTailDataModule(L.LightningDataModule):
    """Long-tailed train set, stratified validation split, and balanced/LT/reverse-LT test sets.

    Args:
        root: dataset directory.
        imbalance_factor: ``n_max / n_min`` of the training profile; ``None`` keeps the training
            set as it is (already long-tailed, e.g. ImageNet-LT).
        n_max: images of the head class (default: the largest class of the full training set).
        val_fraction: share of each training class carved off for validation (model selection);
            ignored when the dataset ships its own validation split.
        batch_size / eval_batch_size / num_workers: loader settings.
        seed: seeds the long-tail subsample, the validation split and the test variants.
        augment: ``"standard"``, ``"autoaugment"`` (where supported) or ``"none"``.
        test_imbalance_factor: profile of the LT / reverse-LT test variants (default: the training IF).
        max_test_per_class: cap the balanced test set per class (seeded) for quick runs.
    """

    num_classes: int = 0

    def __init__(self, root: str, imbalance_factor: Optional[float] = 100.0, n_max: Optional[int] = None,
                 val_fraction: float = 0.1, batch_size: int = 128, eval_batch_size: Optional[int] = None,
                 num_workers: int = 0, seed: int = 0, augment: str = "standard",
                 test_imbalance_factor: Optional[float] = None, max_test_per_class: Optional[int] = None) -> None:
        super().__init__()
        if augment not in self.augmentations():
            raise ValueError(f"augment must be one of {self.augmentations()}, got '{augment}'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.root = root
        self.imbalance_factor, self.n_max, self.val_fraction = imbalance_factor, n_max, val_fraction
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.augment = num_workers, seed, augment
        self.test_imbalance_factor = test_imbalance_factor or imbalance_factor or 100.0
        self.max_test_per_class = max_test_per_class
        self.class_counts: Optional[List[int]] = None
        self.test_variants: Tuple[str, ...] = PRIOR_VARIANTS
        self._splits: Dict[str, Dataset] = {}
        self._test_counts: Dict[str, List[int]] = {}

    # --- to implement in a subclass -------------------------------------------------------
    def load_split(self, split: str) -> Optional[Tuple[Dataset, np.ndarray]]:
        """``(dataset of (untransformed image, label), labels)`` for ``train``/``val``/``test``; ``None`` if absent."""
        raise NotImplementedError

    def train_transform(self) -> Callable:
        raise NotImplementedError

    def eval_transform(self) -> Callable:
        raise NotImplementedError

    @classmethod
    def augmentations(cls) -> Tuple[str, ...]:
        return ("standard", "autoaugment", "none")

    # --- long-tail logic --------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        if self._splits:
            return
        base, targets = self.load_split("train")
        targets = np.asarray(targets, dtype=np.int64)
        full = class_counts(targets, self.num_classes)
        keep = np.arange(len(targets))
        if self.imbalance_factor is not None:
            prof = longtail_counts(self.n_max or max(full), self.num_classes, self.imbalance_factor)
            keep = subsample_per_class(targets, prof, self.seed)
        own_val = self.load_split("val")
        if own_val is None:
            tr, va = stratified_split(targets[keep], self.val_fraction, self.seed)
            train_idx, val_idx = keep[tr], keep[va]
            self._splits["val"] = TransformSubset(base, val_idx, self.eval_transform())
        else:
            train_idx = keep
            self._splits["val"] = TransformSubset(own_val[0], np.arange(len(own_val[1])), self.eval_transform())
        self.class_counts = class_counts(targets[train_idx], self.num_classes)
        self._splits["train"] = TransformSubset(base, train_idx, self.train_transform())

        test_base, test_targets = self.load_split("test")
        test_targets = np.asarray(test_targets, dtype=np.int64)
        test_keep = np.arange(len(test_targets))
        if self.max_test_per_class:
            per = [min(self.max_test_per_class, n) for n in class_counts(test_targets, self.num_classes)]
            test_keep = subsample_per_class(test_targets, per, self.seed + 7)
        variants = prior_variant_indices(test_targets[test_keep], self.num_classes,
                                         self.test_imbalance_factor, self.seed)
        for name in self.test_variants:
            idx = test_keep[variants[name]]
            self._test_counts[name] = class_counts(test_targets[idx], self.num_classes)
            self._splits[f"test/{name}"] = TransformSubset(test_base, idx, self.eval_transform(), with_index=True)

    def test_prior(self, variant: str) -> torch.Tensor:
        """Class distribution of test variant ``variant`` (sums to 1), the prior given to OT inference."""
        counts = torch.tensor(self._test_counts[variant], dtype=torch.float64)
        return (counts / counts.sum()).float()

    def shot_groups(self) -> Dict[str, List[int]]:
        return shot_groups(self.class_counts)

    def split(self, name: str) -> Dataset:
        if not self._splits:
            self.setup()
        return self._splits[name]

    def _loader(self, ds: Dataset, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=False, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split("val"), False, self.eval_batch_size)

    def test_dataloader(self) -> List[DataLoader]:
        return [self._loader(self.split(f"test/{n}"), False, self.eval_batch_size) for n in self.test_variants]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.split("test/balanced"), False, self.eval_batch_size)
