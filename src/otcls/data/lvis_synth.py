"""Offline long-tailed instance-segmentation set in LVIS v1 format, built from Fashion-MNIST.

Real Fashion-MNIST items (train split → ``train2017``, test split → ``val2017``) are resized
and pasted, without overlap, onto small RGB canvases. Each item's mask is the union of the
polygons traced (``contourpy``) around its thresholded pixels; the polygons are what the JSON
stores, exactly like LVIS, and the item is painted only inside their rasterisation, so the
image, the polygons and the decoded mask agree. Training categories follow an exponential
long tail (``imbalance`` = head/tail sampling ratio); validation categories are uniform.

Written layout (the one :class:`otcls.data.lvis.LVISDataModule` reads for real LVIS)::

    OUT/annotations/lvis_v1_train.json   OUT/annotations/lvis_v1_val.json
    OUT/coco/train2017/000000000001.png  OUT/coco/val2017/000000100001.png

Category ``frequency`` is LVIS's: by the number of *training images* containing the category,
``r`` (1-10), ``c`` (11-100), ``f`` (>100). Every image is exhaustively annotated, so
``neg_category_ids`` lists all categories absent from it and ``not_exhaustive_category_ids``
is empty.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

from otcls._extras import require

require("lvis", "pycocotools", "contourpy")

import contourpy  # noqa: E402
import numpy as np  # noqa: E402
import pycocotools.mask as mask_utils  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

FMNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FMNIST_NAMES = ("t_shirt", "trouser", "pullover", "dress", "coat",
                "sandal", "shirt", "sneaker", "bag", "ankle_boot")
VAL_ID_OFFSET = 100_000


def lvis_frequency(image_count: int) -> str:
    """LVIS frequency group from the number of training images containing a category."""
    if image_count <= 10:
        return "r"
    return "c" if image_count <= 100 else "f"


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (optionally gzipped), the format of the original (Fashion-)MNIST files."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(images (N,28,28) uint8, labels (N,))`` of split ``train`` or ``test`` from the idx files in ``root``."""
    prefix = {"train": "train", "test": "t10k"}[split]
    paths = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        cands = [os.path.join(root, f"{prefix}-{kind}{ext}") for ext in (".gz", "")]
        found = [p for p in cands if os.path.isfile(p)]
        if not found:
            raise ValueError(f"Fashion-MNIST file {prefix}-{kind}[.gz] not found in '{root}'; install it with "
                             "'sudo apt-get install dataset-fashion-mnist' (files land in "
                             f"{FMNIST_DEFAULT_ROOT}) or pass --fmnist-root")
        paths.append(found[0])
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"Fashion-MNIST files in '{root}' have inconsistent shapes {images.shape}, {labels.shape}")
    return images, labels


def mask_polygons(mask: np.ndarray) -> List[List[float]]:
    """Closed outlines (COCO polygon lists ``[x0,y0,x1,y1,...]``) of a binary mask, at level 0.5.

    Coordinates are pixel centres shifted by +0.5 so the polygons rasterise back onto ``mask``.
    """
    padded = np.pad(mask.astype(np.float64), 1)
    lines = contourpy.contour_generator(z=padded, line_type="Separate").lines(0.5)
    polys = []
    for line in lines:
        if len(line) < 4:
            continue
        xy = line[:-1] - 1.0 + 0.5  # drop the repeated closing point, undo padding, pixel centres
        polys.append([round(float(v), 2) for v in xy.reshape(-1)])
    return polys


def category_weights(num_classes: int, imbalance: float) -> np.ndarray:
    """Sampling probabilities ``p_j ∝ imbalance^(-j/(K-1))`` (head/tail ratio = ``imbalance``)."""
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1 (head/tail ratio), got {imbalance}")
    w = imbalance ** (-np.arange(num_classes) / max(num_classes - 1, 1))
    return w / w.sum()


def _place(rng: np.random.Generator, canvas: int, size: int, taken: np.ndarray, tries: int = 30
           ) -> Optional[Tuple[int, int]]:
    for _ in range(tries):
        y, x = rng.integers(0, canvas - size + 1, size=2)
        if not taken[y:y + size, x:x + size].any():
            return int(y), int(x)
    return None


def render_image(rng: np.random.Generator, items: Sequence[np.ndarray], canvas: int,
                 size_range: Tuple[int, int]) -> Tuple[np.ndarray, List[Tuple[int, List[List[float]], Dict]]]:
    """Paste ``items`` (28×28 uint8) on one canvas; returns ``(rgb uint8 (H,W,3), [(item index, polygons, rle)])``."""
    bg = rng.integers(0, 60, size=3)
    img = np.clip(bg + rng.normal(0, 12, size=(canvas, canvas, 3)), 0, 255)
    taken = np.zeros((canvas, canvas), dtype=bool)
    placed = []
    for k, item in enumerate(items):
        size = int(rng.integers(size_range[0], size_range[1] + 1))
        pos = _place(rng, canvas, size, taken)
        if pos is None:
            continue
        y, x = pos
        big = np.asarray(Image.fromarray(item).resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
        local = np.zeros((canvas, canvas), dtype=np.uint8)
        local[y:y + size, x:x + size] = big > 0.1
        polys = mask_polygons(local)
        if not polys:
            continue
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, canvas, canvas))
        m = mask_utils.decode(rle).astype(bool)
        if m.sum() < 16:
            continue
        color = rng.uniform(0.5, 1.0, size=3) * 255
        inten = np.zeros((canvas, canvas))
        inten[y:y + size, x:x + size] = 0.35 + 0.65 * big
        img[m] = (inten[m, None] * color[None, :])
        taken[y:y + size, x:x + size] = True
        placed.append((k, polys, rle))
    return img.astype(np.uint8), placed


def build_split(split: str, images: np.ndarray, labels: np.ndarray, *, n_images: int, probs: np.ndarray,
                canvas: int, max_items: int, size_range: Tuple[int, int], image_dir: str, id_offset: int,
                rng: np.random.Generator) -> Tuple[List[Dict], List[Dict]]:
    """Render ``n_images`` canvases into ``image_dir``; returns LVIS ``images`` and ``annotations`` lists."""
    num_classes = len(probs)
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    os.makedirs(image_dir, exist_ok=True)
    img_entries, anns = [], []
    folder = os.path.basename(os.path.normpath(image_dir))
    for i in tqdm(range(n_images), desc=f"lvis-demo {split}", leave=False):
        image_id = id_offset + i + 1
        cats = rng.choice(num_classes, size=int(rng.integers(1, max_items + 1)), p=probs)
        picks = [int(rng.choice(by_class[c])) for c in cats]
        rgb, placed = render_image(rng, [images[p] for p in picks], canvas, size_range)
        fname = f"{image_id:012d}.png"
        Image.fromarray(rgb).save(os.path.join(image_dir, fname))
        present = set()
        for k, polys, rle in placed:
            cat_id = int(cats[k]) + 1
            present.add(cat_id)
            anns.append({"id": len(anns) + 1 + id_offset, "image_id": image_id, "category_id": cat_id,
                         "segmentation": polys, "area": float(mask_utils.area(rle)),
                         "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
        img_entries.append({"id": image_id, "height": canvas, "width": canvas,
                            "coco_url": f"lvis-demo/{folder}/{fname}",
                            "neg_category_ids": [c for c in range(1, num_classes + 1) if c not in present],
                            "not_exhaustive_category_ids": []})
    return img_entries, anns


def make_categories(train_anns: List[Dict], num_classes: int) -> List[Dict]:
    """LVIS category records with ``image_count``, ``instance_count`` and ``frequency`` from the training split."""
    imgs = [set() for _ in range(num_classes)]
    inst = [0] * num_classes
    for a in train_anns:
        imgs[a["category_id"] - 1].add(a["image_id"])
        inst[a["category_id"] - 1] += 1
    cats = []
    for c in range(num_classes):
        name = FMNIST_NAMES[c]
        cats.append({"id": c + 1, "name": name, "synonyms": [name], "synset": f"fmnist.{name}",
                     "def": f"Fashion-MNIST class {c} ({name})", "image_count": len(imgs[c]),
                     "instance_count": inst[c], "frequency": lvis_frequency(len(imgs[c]))})
    return cats


def make_lvis_demo(out: str, *, fmnist_root: str = FMNIST_DEFAULT_ROOT, train_images: int = 400,
                   val_images: int = 100, canvas: int = 128, max_items: int = 3, imbalance: float = 100.0,
                   min_size: int = 24, max_size: int = 56, seed: int = 0) -> Dict[str, str]:
    """Write the demo set under ``out``; returns the paths of the two annotation files."""
    if canvas < 32:
        raise ValueError(f"canvas must be >= 32 pixels, got {canvas}")
    if not 8 <= min_size <= max_size <= canvas:
        raise ValueError(f"need 8 <= min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}")
    if train_images < 1 or val_images < 1 or max_items < 1:
        raise ValueError("train_images, val_images and max_items must be >= 1")
    rng = np.random.default_rng(seed)
    num_classes = len(FMNIST_NAMES)
    tr_x, tr_y = load_fashion_mnist(fmnist_root, "train")
    te_x, te_y = load_fashion_mnist(fmnist_root, "test")
    # A random class order so the tail is not always the same garments.
    order = rng.permutation(num_classes)
    probs = np.empty(num_classes)
    probs[order] = category_weights(num_classes, imbalance)
    kw = dict(canvas=canvas, max_items=max_items, size_range=(min_size, max_size), rng=rng)
    tr_imgs, tr_anns = build_split("train", tr_x, tr_y, n_images=train_images, probs=probs,
                                   image_dir=os.path.join(out, "coco", "train2017"), id_offset=0, **kw)
    va_imgs, va_anns = build_split("val", te_x, te_y, n_images=val_images,
                                   probs=np.full(num_classes, 1.0 / num_classes),
                                   image_dir=os.path.join(out, "coco", "val2017"), id_offset=VAL_ID_OFFSET, **kw)
    cats = make_categories(tr_anns, num_classes)
    missing = [c["name"] for c in cats if c["image_count"] == 0]
    if missing:
        raise ValueError(f"categories {missing} got no training image; raise train_images or lower imbalance")
    info = {"description": "otcls offline LVIS-format demo built from Fashion-MNIST", "version": "1.0",
            "year": 2024, "seed": seed, "imbalance": imbalance}
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    paths = {}
    for split, imgs, anns in (("train", tr_imgs, tr_anns), ("val", va_imgs, va_anns)):
        path = os.path.join(out, "annotations", f"lvis_v1_{split}.json")
        with open(path, "w") as f:
            json.dump({"info": info, "licenses": [], "categories": cats, "images": imgs, "annotations": anns}, f)
        paths[split] = path
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="otcls make-lvis-demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="data/lvis_demo", help="output directory (default: data/lvis_demo)")
    p.add_argument("--fmnist-root", default=FMNIST_DEFAULT_ROOT, help="folder with the Fashion-MNIST idx files")
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--val-images", type=int, default=100)
    p.add_argument("--canvas", type=int, default=128, help="canvas side in pixels")
    p.add_argument("--max-items", type=int, default=3, help="items per image are drawn from 1..max-items")
    p.add_argument("--imbalance", type=float, default=100.0, help="head/tail category sampling ratio")
    p.add_argument("--min-size", type=int, default=24)
    p.add_argument("--max-size", type=int, default=56)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    paths = make_lvis_demo(a.out, fmnist_root=a.fmnist_root, train_images=a.train_images,
                           val_images=a.val_images, canvas=a.canvas, max_items=a.max_items,
                           imbalance=a.imbalance, min_size=a.min_size, max_size=a.max_size, seed=a.seed)
    with open(paths["train"]) as f:
        cats = json.load(f)["categories"]
    print(f"wrote {paths['train']} and {paths['val']}")
    print("category        images  instances  frequency")
    for c in sorted(cats, key=lambda c: -c["image_count"]):
        print(f"{c['name']:<15} {c['image_count']:>6}  {c['instance_count']:>9}  {c['frequency']:>9}")
    return 0
