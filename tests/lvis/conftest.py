"""A tiny offline LVIS-format set generated from idx files written here in the Fashion-MNIST format."""
from __future__ import annotations

import gzip
import json
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


# --- a tiny set in the official LVIS v1 layout ------------------------------------------------------------
# COCO-2017 JPEG files named by id (some grayscale), paths only in ``coco_url``, non-contiguous category ids,
# validation images stored in both ``train2017/`` and ``val2017/``, every LVIS v1 field present.
OFFICIAL_CATEGORIES = [  # (id, name) as in LVIS v1: ids are not contiguous in a subset
    (3, "aerosol_can"), (17, "apple"), (42, "banana"), (1203, "zucchini")]
OFFICIAL_SIZE = (48, 64)  # (height, width): not square, as COCO images are not


def _official_image(rng: np.random.Generator, gray: bool, objects: list):
    """A PIL image: dark noise with the objects' boxes filled in their category colour."""
    from PIL import Image

    h, w = OFFICIAL_SIZE
    pixels = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
    for (x, y, bw, bh), colour in objects:
        pixels[y:y + bh, x:x + bw] = colour
    img = Image.fromarray(pixels)
    return img.convert("L") if gray else img


def write_official_lvis(root: str, seed: int = 0, train_images: int = 12, val_images: int = 5) -> None:
    """LVIS v1 JSONs + COCO-2017 JPEGs: each image holds 1-2 axis-aligned boxes of a category colour."""
    rng = np.random.default_rng(seed)
    colours = {3: (230, 40, 40), 17: (40, 230, 40), 42: (230, 230, 40), 1203: (40, 40, 230)}
    weights = np.array([8.0, 4.0, 2.0, 1.0])  # long-tailed training categories
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    ann_id = 1
    next_image_id = 139
    train_categories: list = []
    for split, n_images in (("train", train_images), ("val", val_images)):
        images, annotations = [], []
        for k in range(n_images):
            next_image_id += int(rng.integers(1, 5000))
            img_id = next_image_id
            # LVIS v1 val draws images from both COCO folders
            folder = "train2017" if split == "train" or k % 2 == 0 else "val2017"
            objects, cats = [], []
            for j in range(1 + (k % 2)):
                p = weights / weights.sum() if split == "train" else np.full(4, 0.25)
                cid = OFFICIAL_CATEGORIES[int(rng.choice(4, p=p))][0]
                x, y = int(rng.integers(2, 10)) + 30 * j, int(rng.integers(2, 10))
                bw, bh = int(rng.integers(14, 24)), int(rng.integers(14, 30))
                objects.append(((x, y, bw, bh), colours[cid]))
                cats.append(cid)
                annotations.append({"id": ann_id, "image_id": img_id, "category_id": cid, "area": float(bw * bh),
                                    "bbox": [float(x), float(y), float(bw), float(bh)],
                                    "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
                ann_id += 1
            path = os.path.join(root, "coco", folder, f"{img_id:012d}.jpg")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _official_image(rng, gray=k % 3 == 2, objects=objects).save(path, quality=95)
            h, w = OFFICIAL_SIZE
            images.append({"id": img_id, "height": h, "width": w, "license": 1, "date_captured": "2013-11-14 16:28:13",
                           "flickr_url": f"http://farm1.staticflickr.com/{img_id}.jpg",
                           "coco_url": f"http://images.cocodataset.org/{folder}/{img_id:012d}.jpg",
                           "neg_category_ids": sorted({c for c, _ in OFFICIAL_CATEGORIES} - set(cats)),
                           "not_exhaustive_category_ids": []})
        # as in LVIS v1, the val file repeats the training categories and their counts
        categories = train_categories
        for cid, name in OFFICIAL_CATEGORIES if split == "train" else ():
            n_inst = sum(a["category_id"] == cid for a in annotations)
            n_img = len({a["image_id"] for a in annotations if a["category_id"] == cid})
            categories.append({"id": cid, "name": name, "synset": f"{name}.n.01", "synonyms": [name],
                               "def": f"a {name}", "instance_count": n_inst, "image_count": n_img,
                               "frequency": "r" if n_img <= 10 else "c" if n_img <= 100 else "f"})
        with open(os.path.join(root, "annotations", f"lvis_v1_{split}.json"), "w") as fh:
            json.dump({"info": {"description": "LVIS v1 layout test set", "version": "1.0"},
                       "licenses": [{"id": 1, "name": "Attribution License", "url": ""}],
                       "images": images, "annotations": annotations, "categories": categories}, fh)


@pytest.fixture(scope="session")
def official_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("lvis_v1_layout"))
    write_official_lvis(root)
    return root
