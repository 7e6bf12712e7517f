"""LVIS v1 instance segmentation: the official JSON read with the ``lvis`` API, COCO-2017 images.

On-disk layout (``root``)::

    root/annotations/lvis_v1_train.json    (https://www.lvisdataset.org/dataset)
    root/annotations/lvis_v1_val.json
    root/coco/train2017/*.jpg              (https://cocodataset.org, 2017 train/val images)
    root/coco/val2017/*.jpg

LVIS v1 images carry no file name; as in the official tools, the path is the last two parts of
``coco_url`` (``train2017/000000391895.jpg``) under ``image_root``. ``otcls make-lvis-demo``
writes a small offline set in this same layout.

Labels: LVIS category ids are mapped to contiguous labels ``1..K`` in sorted id order; label
``0`` is reserved for torchvision's background class.

Class counts (the long-tail losses' prior) are counted from the annotations of the training images
actually used (all of them, or the first ``max_train_images``): ``instance_count`` counts boxes (what
the box classifier sees), ``image_count`` counts images (how LVIS defines its rare / common /
frequent groups). When every training image is used they must equal the JSON's own fields, which is
checked. ``count_source: json`` takes the JSON fields instead.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import lightning as L
import numpy as np
import torch

from otcls._extras import require

require("lvis", "lvis")

from lvis import LVIS  # noqa: E402
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

HOW_TO_GET = ("download the LVIS v1 annotations (https://www.lvisdataset.org/dataset) and the COCO-2017 "
              "train/val images, or write the offline demo set with 'otcls make-lvis-demo --out data/lvis_demo'")
COUNT_FIELDS = ("instance_count", "image_count")
COUNT_SOURCES = ("annotations", "json")


def first_images(lvis: LVIS, limit: Optional[int]) -> List[int]:
    """The image ids a split uses: all of them, or the first ``limit`` in sorted order (quick runs)."""
    ids = sorted(lvis.get_img_ids())
    return ids[:limit] if limit else ids


def category_counts(lvis: LVIS, image_ids: Sequence[int], category_ids: Sequence[int], field: str) -> List[int]:
    """Per category (in ``category_ids`` order): its instances (``instance_count``) or the images that
    contain it (``image_count``) among ``image_ids``' annotations, as LVIS defines those fields."""
    if field not in COUNT_FIELDS:
        raise ValueError(f"count field must be one of {COUNT_FIELDS}, got '{field}'")
    counts: Counter = Counter()
    for img_id in image_ids:
        cats = [a["category_id"] for a in lvis.img_ann_map.get(img_id, [])]
        counts.update(cats if field == "instance_count" else set(cats))
    return [int(counts[c]) for c in category_ids]


def image_path(image_root: str, img: Dict) -> str:
    """Image file of an LVIS v1 image record: ``image_root/<split folder>/<file>`` from its ``coco_url``."""
    parts = img["coco_url"].replace("\\", "/").split("/")
    return os.path.join(image_root, parts[-2], parts[-1])


def detection_collate(batch: Sequence[Tuple[torch.Tensor, Dict]]) -> Tuple[List[torch.Tensor], List[Dict]]:
    """Images of different sizes cannot be stacked: keep lists, as torchvision detectors expect."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class LVISDetection(Dataset):
    """One LVIS split: ``(image float (3,H,W) in [0,1], target)``.

    ``target``: ``boxes`` (n,4) xyxy float, ``labels`` (n,) int64 in ``1..K``, ``masks`` (n,H,W) uint8,
    ``image_id`` int. Annotations with a box narrower than one pixel are dropped. ``hflip``: probability
    of flipping image, boxes and masks together (training augmentation; torchvision v2 transforms).
    """

    def __init__(self, lvis: LVIS, image_root: str, cat_to_label: Dict[int, int],
                 image_ids: Optional[Sequence[int]] = None, skip_empty: bool = False, hflip: float = 0.0) -> None:
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
        self.lvis, self.image_root, self.cat_to_label = lvis, image_root, cat_to_label
        ids = sorted(lvis.get_img_ids()) if image_ids is None else list(image_ids)
        if skip_empty:
            ids = [i for i in ids if lvis.img_ann_map[i]]
        self.image_ids = ids
        self.flip = v2.RandomHorizontalFlip(hflip) if hflip > 0 else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, k: int) -> Tuple[torch.Tensor, Dict]:
        img_id = self.image_ids[k]
        info = self.lvis.imgs[img_id]
        path = image_path(self.image_root, info)
        if not os.path.isfile(path):
            raise ValueError(f"image file '{path}' of LVIS image {img_id} is missing; {HOW_TO_GET}")
        image = decode_image(path, mode=ImageReadMode.RGB).float() / 255.0
        h, w = int(info["height"]), int(info["width"])
        if tuple(image.shape[1:]) != (h, w):
            raise ValueError(f"'{path}' is {tuple(image.shape[1:])} but the JSON says {(h, w)}")
        anns = [a for a in self.lvis.load_anns(self.lvis.get_ann_ids(img_ids=[img_id]))
                if a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64)
        masks = (torch.from_numpy(np.stack([self.lvis.ann_to_mask(a) for a in anns])).to(torch.uint8)
                 if anns else torch.zeros((0, h, w), dtype=torch.uint8))
        if self.flip is not None:
            image, boxes, masks = self.flip(tv_tensors.Image(image),
                                            tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
                                            tv_tensors.Mask(masks))
            image, boxes, masks = image.as_subclass(torch.Tensor), boxes.as_subclass(torch.Tensor), \
                masks.as_subclass(torch.Tensor)
        return image, {"boxes": boxes, "labels": labels, "masks": masks, "image_id": img_id}


class LVISDataModule(L.LightningDataModule):
    """LVIS v1 (or the offline demo set) for torchvision detectors; validation = LVIS val.

    Args:
        root: folder holding ``annotations/`` and ``coco/`` (see module doc).
        train_json / val_json / image_root: paths relative to ``root`` (or absolute).
        batch_size / eval_batch_size / num_workers: loader settings.
        count_field: what the long-tail losses' class counts count, ``instance_count`` (boxes, what the
            box classifier sees) or ``image_count`` (images containing the category).
        count_source: ``annotations`` (counted on the training images used; checked against the JSON
            fields when all are used) or ``json`` (the JSON's field, i.e. the full training set).
        hflip: horizontal-flip probability of training images, boxes and masks (0.5 in the standard
            Mask R-CNN LVIS recipe; 0 turns augmentation off).
        max_train_images / max_val_images: keep the first N images (sorted ids) for quick runs.
    """

    def __init__(self, root: str = "data/lvis_demo", train_json: str = "annotations/lvis_v1_train.json",
                 val_json: str = "annotations/lvis_v1_val.json", image_root: str = "coco", batch_size: int = 2,
                 eval_batch_size: Optional[int] = None, num_workers: int = 0, count_field: str = "instance_count",
                 count_source: str = "annotations", hflip: float = 0.5, max_train_images: Optional[int] = None,
                 max_val_images: Optional[int] = None) -> None:
        super().__init__()
        if count_field not in COUNT_FIELDS:
            raise ValueError(f"count_field must be one of {COUNT_FIELDS}, got '{count_field}'")
        if count_source not in COUNT_SOURCES:
            raise ValueError(f"count_source must be one of {COUNT_SOURCES}, got '{count_source}'")
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.train_json, self.val_json = (os.path.join(root, p) for p in (train_json, val_json))
        self.image_root = os.path.join(root, image_root)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.count_field, self.count_source, self.hflip = num_workers, count_field, count_source, hflip
        self.max_train_images, self.max_val_images = max_train_images, max_val_images
        self.train_lvis: Optional[LVIS] = None
        self.val_lvis: Optional[LVIS] = None
        self._load_categories()

    def _load_categories(self) -> None:
        for path in (self.train_json, self.val_json):
            if not os.path.isfile(path):
                raise ValueError(f"LVIS annotation file '{path}' not found; {HOW_TO_GET}")
        self.train_lvis = LVIS(self.train_json)
        cats = sorted(self.train_lvis.dataset["categories"], key=lambda c: c["id"])
        missing = [c["id"] for c in cats if self.count_field not in c or "frequency" not in c]
        if missing:
            raise ValueError(f"categories {missing[:5]} lack '{self.count_field}'/'frequency'; "
                             f"'{self.train_json}' is not an LVIS v1 file")
        self.categories = cats
        self.category_ids = [c["id"] for c in cats]
        self.cat_to_label = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.num_classes = len(cats)
        self.frequency = [c["frequency"] for c in cats]
        self.class_counts = self._class_counts(cats)

    def _class_counts(self, cats: List[Dict]) -> List[int]:
        from_json = [int(c[self.count_field]) for c in cats]
        if self.count_source == "json":
            return from_json
        used = first_images(self.train_lvis, self.max_train_images)
        counts = category_counts(self.train_lvis, used, self.category_ids, self.count_field)
        if len(used) == len(self.train_lvis.get_img_ids()):
            off = [(cid, n, j) for cid, n, j in zip(self.category_ids, counts, from_json) if n != j]
            if off:
                warnings.warn(f"{len(off)} categories' {self.count_field} in '{self.train_json}' differ from its "
                              f"annotations (category id, annotations, JSON): {off[:5]}; using the annotations' "
                              "counts (count_source: json uses the field)", stacklevel=2)
        empty = [cid for cid, n in zip(self.category_ids, counts) if n == 0]
        if empty:
            raise ValueError(f"{len(empty)} of {self.num_classes} categories have no training annotation in the "
                             f"{len(used)} training images used (category ids {empty[:10]}{' ...' if len(empty) > 10 else ''}), "
                             "so the long-tail losses would see a zero prior; use more images (max_train_images) "
                             "or count_source: json to take the full training set's counts")
        return counts

    def setup(self, stage: Optional[str] = None) -> None:
        if self.val_lvis is None:
            self.val_lvis = LVIS(self.val_json)
            val_cats = sorted(c["id"] for c in self.val_lvis.dataset["categories"])
            if val_cats != self.category_ids:
                raise ValueError(f"'{self.val_json}' and '{self.train_json}' list different categories")

    def _dataset(self, lvis: LVIS, limit: Optional[int], skip_empty: bool, hflip: float = 0.0) -> LVISDetection:
        return LVISDetection(lvis, self.image_root, self.cat_to_label, first_images(lvis, limit), skip_empty=skip_empty,
                             hflip=hflip)

    def _loader(self, ds: Dataset, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=detection_collate, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.train_lvis, self.max_train_images, True, self.hflip), True,
                            self.batch_size)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self._dataset(self.val_lvis, self.max_val_images, False), False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
