"""Generic long-tailed image DataModule: imbalance, validation split, test-prior variants.

A subclass says how to read one split (:meth:`LongTailDataModule.load_split`) and which
transforms to use; this class owns everything long-tail specific, seeded so every run with
the same ``seed`` sees the same images.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from otcls.data.batch_augment import BatchAugment
from otcls.data.transforms import small_image_eval, small_image_train
from otcls.data.longtail import (PRIOR_VARIANTS, class_counts, holdout_per_class, longtail_counts, shot_groups,
                                  stratified_split, subsample_per_class, prior_variant_indices)

log = logging.getLogger(__name__)


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


class TensorSubset(Dataset):
    """``images[indices]`` held in memory as one normalised float tensor, served a whole batch at a time.

    ``images`` is uint8 ``(N, H, W)`` (grey) or ``(N, H, W, C)``; the result equals torchvision's
    ``ToTensor()`` + ``Normalize(mean, std)`` per image. The DataLoader calls ``__getitems__`` with
    a batch of positions, so a step costs one tensor index instead of a PIL transform per image
    (for small CNNs on CPU the per-image Python work otherwise dominates the step).
    """

    def __init__(self, images: torch.Tensor, targets: Sequence[int], indices: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], with_index: bool = False) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        idx = torch.as_tensor(self.indices)
        x = images[idx].float().div_(255.0)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        shape = (1, -1, 1, 1)
        self.x = ((x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)).contiguous()
        self.y = torch.as_tensor(np.asarray(targets, dtype=np.int64))[idx]
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, k: int) -> tuple:
        return (self.x[k], int(self.y[k]), k) if self.with_index else (self.x[k], int(self.y[k]))

    def __getitems__(self, ks: List[int]) -> tuple:
        pos = torch.as_tensor(ks, dtype=torch.long)
        return (self.x[pos], self.y[pos], pos) if self.with_index else (self.x[pos], self.y[pos])

    @staticmethod
    def collate_fn(batch: tuple) -> tuple:
        """The batch is already collated by ``__getitems__``."""
        return batch


@dataclass
class IndexBatch:
    """A training batch of the ``pipeline: device`` path: positions into the training images held on the
    device, and their labels. Lightning moves it to the device; the DataModule's ``on_after_batch_transfer``
    turns it into ``(augmented images, labels)`` there."""

    index: torch.Tensor
    target: torch.Tensor


class IndexSubset(Dataset):
    """The training split of ``pipeline: device``: a batch of sampler positions is served as one
    :class:`IndexBatch` (the images stay on the device; only ``B`` positions and labels are loaded)."""

    def __init__(self, targets: Sequence[int], indices: Sequence[int]) -> None:
        self.y = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        self.indices = np.asarray(indices, dtype=np.int64)  # positions in the base dataset (for inspection)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, k: int) -> IndexBatch:
        return self.__getitems__([k])

    def __getitems__(self, ks: List[int]) -> IndexBatch:
        pos = torch.as_tensor(ks, dtype=torch.long)
        return IndexBatch(pos, self.y[pos])

    @staticmethod
    def collate_fn(batch: IndexBatch) -> IndexBatch:
        return batch


def channels_first(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> contiguous ``(N, C, H, W)``."""
    return (images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)).contiguous()


PIPELINES = ("workers", "device")


def _check_positive_int(name: str, value, otherwise: str) -> None:
    """A ValueError unless ``value`` is None or an integer >= 1 (0 would silently mean "all" in a truth test)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 {otherwise}, got {value!r}")


class LongTailDataModule(L.LightningDataModule):
    """Long-tailed train set, stratified validation split, and balanced/LT/reverse-LT test sets.

    Args:
        root: dataset directory.
        imbalance_factor: ``n_max / n_min`` of the training profile; ``None`` keeps the training
            set as it is (already long-tailed, e.g. ImageNet-LT).
        n_max: images of the head class (default: the largest class of the full training set).
        val_per_class: validation images per class, held out (seeded) from the training split *before*
            the long-tailed subset is drawn from the rest, so validation is balanced over every class
            and never overlaps training. A class whose profile count exceeds what is left (the head
            class when ``n_max`` is the full class size) keeps what is left (``capped_classes``, and a
            log line). Takes precedence over ``val_fraction``.
        val_fraction: share of each training class carved off the long-tailed subset for
            validation (used when ``val_per_class`` is None); ignored when the dataset ships its
            own validation split.
        batch_size / eval_batch_size / num_workers: loader settings.
        seed: seeds the long-tail subsample, the validation split and the test variants.
        augment: ``"standard"``, ``"autoaugment"`` (where supported) or ``"none"``.
        test_imbalance_factor: profile of the LT / reverse-LT test variants (default: the training IF).
        max_test_per_class: cap the balanced test set per class (seeded) for quick runs.
        shot_many / shot_few: shot groups: many > ``shot_many`` training images, few < ``shot_few``, medium
            between (100 / 20, the usual CIFAR-100 / ImageNet-LT groups; the papers' CIFAR-10 groups, many
            > 100 and few ≤ 100, are ``shot_few: 101``).
        pipeline: ``workers``: per-image PIL transforms in ``num_workers`` DataLoader workers; ``device`` (datasets
            held in memory: CIFAR, Fashion-MNIST): the long-tailed training images are held once as a uint8
            tensor on the training device and each batch is augmented there by :class:`BatchAugment` (same
            transforms, drawn per sample; no workers). Evaluation splits of in-memory datasets are served as
            normalised tensors on either path.

    A subclass whose images fit in memory returns them from :meth:`memory_arrays` and sets ``image_size``,
    ``crop_padding``, ``mean`` and ``std``; the train / eval transforms then follow from those.
    """

    num_classes: int = 0
    image_size: int = 0
    crop_padding: int = 0
    mean: Tuple[float, ...] = ()
    std: Tuple[float, ...] = ()

    def __init__(self, root: str, imbalance_factor: Optional[float] = 100.0, n_max: Optional[int] = None,
                 val_fraction: float = 0.1, val_per_class: Optional[int] = None, batch_size: int = 128, eval_batch_size: Optional[int] = None,
                 num_workers: int = 0, seed: int = 0, augment: str = "standard",
                 test_imbalance_factor: Optional[float] = None, max_test_per_class: Optional[int] = None,
                 shot_many: int = 100, shot_few: int = 20, pipeline: str = "workers") -> None:
        super().__init__()
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got '{pipeline}'")
        if pipeline == "device" and type(self).memory_arrays is LongTailDataModule.memory_arrays:
            raise ValueError(f"pipeline: device needs a dataset held in memory (CIFAR, Fashion-MNIST); "
                             f"{type(self).__name__} reads images from files: use pipeline: workers")
        if augment not in self.augmentations():
            raise ValueError(f"augment must be one of {self.augmentations()}, got '{augment}'")
        if val_per_class is not None and val_per_class < 1:
            raise ValueError(f"val_per_class must be >= 1 (or null to use val_fraction), got {val_per_class}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_positive_int("n_max", n_max, "(or null for the largest class of the training set)")
        _check_positive_int("max_test_per_class", max_test_per_class, "(or null for every test image)")
        _check_positive_int("eval_batch_size", eval_batch_size, "(or null for batch_size)")
        if imbalance_factor is not None and not (isinstance(imbalance_factor, (int, float)) and imbalance_factor >= 1):
            raise ValueError(f"imbalance_factor must be a number >= 1 (n_max / n_min), or null for the full "
                             f"training set; got {imbalance_factor!r}")
        if test_imbalance_factor is not None and not (isinstance(test_imbalance_factor, (int, float))
                                                      and test_imbalance_factor >= 1):
            raise ValueError(f"test_imbalance_factor must be a number >= 1, or null; got {test_imbalance_factor!r}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if isinstance(root, str) and os.path.isfile(root):
            raise ValueError(f"data root '{root}' is a file; give the folder that holds (or will hold) the dataset")
        self.save_hyperparameters()
        self.root = root
        self.imbalance_factor, self.n_max, self.val_fraction = imbalance_factor, n_max, val_fraction
        self.val_per_class = val_per_class
        self.capped_classes: List[int] = []
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.augment = num_workers, seed, augment
        self.test_imbalance_factor = test_imbalance_factor or imbalance_factor or 100.0
        self.max_test_per_class = max_test_per_class
        if shot_few > shot_many + 1:
            raise ValueError(f"shot_few ({shot_few}) must be <= shot_many + 1 ({shot_many + 1})")
        self.shot_many, self.shot_few = shot_many, shot_few
        self.pipeline = pipeline
        self._train_images: Optional[torch.Tensor] = None  # pipeline: device, uint8 (N, C, H, W), host copy
        self._device_images: Optional[torch.Tensor] = None  # ... and its copy on the training device
        self._augment_rng: Optional[Tuple[Tuple[int, int, int], torch.Generator]] = None
        self._augmenter: Optional[BatchAugment] = None
        self.class_counts: Optional[List[int]] = None
        self.test_variants: Tuple[str, ...] = PRIOR_VARIANTS
        self._splits: Dict[str, Dataset] = {}
        self._test_counts: Dict[str, List[int]] = {}

    # --- to implement in a subclass -------------------------------------------------------
    def load_split(self, split: str) -> Optional[Tuple[Dataset, np.ndarray]]:
        """``(dataset of (untransformed image, label), labels)`` for ``train``/``val``/``test``; ``None`` if absent."""
        raise NotImplementedError

    def memory_arrays(self, base: Dataset) -> Optional[Tuple[torch.Tensor, np.ndarray]]:
        """``(uint8 images (N, H, W) or (N, H, W, C), labels)`` of ``base`` when its images are held in memory."""
        return None

    def train_transform(self) -> Callable:
        return small_image_train(self.image_size, self.crop_padding, self.mean, self.std, self.augment)

    def eval_transform(self) -> Callable:
        return small_image_eval(self.mean, self.std)

    def batch_augment(self) -> BatchAugment:
        """The ``pipeline: device`` form of :meth:`train_transform`."""
        return BatchAugment(self.image_size, self.crop_padding, self.mean, self.std, self.augment)

    def make_subset(self, base: Dataset, indices: np.ndarray, train: bool, with_index: bool = False) -> Dataset:
        """The dataset of one split: in-memory datasets serve evaluation (and un-augmented training) splits as
        normalised tensors and, with ``pipeline: device``, training as positions into the device copy."""
        arrays = self.memory_arrays(base)
        if arrays is None:
            return TransformSubset(base, indices, self.train_transform() if train else self.eval_transform(),
                                   with_index=with_index)
        images, targets = arrays
        if train and self.pipeline == "device":
            self._train_images = channels_first(images[torch.as_tensor(indices)])
            self._device_images = None
            return IndexSubset(np.asarray(targets)[indices], indices)
        if train and self.augment != "none":
            return TransformSubset(base, indices, self.train_transform(), with_index=with_index)
        return TensorSubset(images, targets, indices, self.mean, self.std, with_index)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """``pipeline: device``: gather the batch's images from the device copy and augment them there.

        The draws come from a CPU generator seeded by ``(seed, rank, epoch)``: each rank of a DDP run draws its
        own, and a run resumed at an epoch boundary draws what the uninterrupted run would have drawn."""
        if not isinstance(batch, IndexBatch):
            return batch
        index = batch.index
        if self._device_images is None or self._device_images.device != index.device:
            self._device_images = self._train_images.to(index.device)
        trainer = self.trainer
        key = (self.seed, trainer.global_rank if trainer else 0, trainer.current_epoch if trainer else 0)
        if self._augment_rng is None or self._augment_rng[0] != key:
            seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
            self._augment_rng = (key, torch.Generator().manual_seed(seed))
        if self._augmenter is None:
            self._augmenter = self.batch_augment()
        return self._augmenter(self._device_images[index], self._augment_rng[1]), batch.target

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
        own_val = self.load_split("val")
        pool, val_idx = np.arange(len(targets)), None
        if own_val is None and self.val_per_class is not None:
            # Validation first, balanced over every class (the head class included), so model selection
            # sees all classes; the long-tailed subset is drawn from the rest.
            val_idx, _ = holdout_per_class(targets, [], self.val_per_class, self.num_classes, self.seed + 3)
            pool = np.setdiff1d(pool, val_idx)
            empty = [c for c, n in enumerate(class_counts(targets[pool], self.num_classes)) if n == 0 and full[c] > 0]
            if empty:
                raise ValueError(f"val_per_class={self.val_per_class} holds out every training image of classes "
                                 f"{empty}; lower data.init_args.val_per_class (the smallest class has "
                                 f"{min(n for n in full if n > 0)} images)")
        keep = pool
        if self.imbalance_factor is not None:
            prof = longtail_counts(self.n_max or max(full), self.num_classes, self.imbalance_factor)
            left = class_counts(targets[pool], self.num_classes)
            self.capped_classes = [c for c, (want, have) in enumerate(zip(prof, left)) if want > have]
            if self.capped_classes and val_idx is not None:
                log.info("long-tailed profile: classes %s keep the %s images left after the validation hold-out "
                         "(the profile asks for %s)", self.capped_classes,
                         [left[c] for c in self.capped_classes], [prof[c] for c in self.capped_classes])
                prof = [min(want, have) for want, have in zip(prof, left)]
            keep = pool[subsample_per_class(targets[pool], prof, self.seed)]
        if own_val is not None:
            train_idx = keep
            self._splits["val"] = self.make_subset(own_val[0], np.arange(len(own_val[1])), train=False)
        else:
            if val_idx is not None:
                train_idx = keep
            else:
                tr, va = stratified_split(targets[keep], self.val_fraction, self.seed)
                train_idx, val_idx = keep[tr], keep[va]
            self._splits["val"] = self.make_subset(base, val_idx, train=False)
        self.class_counts = class_counts(targets[train_idx], self.num_classes)
        empty = [c for c, n in enumerate(self.class_counts) if n == 0]
        if empty:
            raise ValueError(f"classes {empty} get no training image (class counts {self.class_counts}): every loss "
                             "and prior needs at least one; raise n_max, lower imbalance_factor or val_per_class")
        self._splits["train"] = self.make_subset(base, train_idx, train=True)

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
            self._splits[f"test/{name}"] = self.make_subset(test_base, idx, train=False, with_index=True)

    def test_prior(self, variant: str) -> torch.Tensor:
        """Class distribution of test variant ``variant`` (sums to 1), the prior given to OT inference."""
        counts = torch.tensor(self._test_counts[variant], dtype=torch.float64)
        return (counts / counts.sum()).float()

    def shot_groups(self) -> Dict[str, List[int]]:
        """Class indices per shot group: many (> ``shot_many`` training images), medium, few (< ``shot_few``)."""
        return shot_groups(self.class_counts, self.shot_many, self.shot_few)

    def split(self, name: str) -> Dataset:
        if not self._splits:
            self.setup()
        return self._splits[name]

    def _loader(self, ds: Dataset, shuffle: bool, batch_size: int) -> DataLoader:
        # in-memory splits are one tensor index per batch: workers would only add inter-process copies
        workers = 0 if isinstance(ds, (IndexSubset, TensorSubset)) else self.num_workers
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          drop_last=False, persistent_workers=workers > 0,
                          collate_fn=getattr(ds, "collate_fn", None))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split("val"), False, self.eval_batch_size)

    def test_dataloader(self) -> List[DataLoader]:
        return [self._loader(self.split(f"test/{n}"), False, self.eval_batch_size) for n in self.test_variants]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.split("test/balanced"), False, self.eval_batch_size)
