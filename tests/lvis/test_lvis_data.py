"""The generated LVIS-format set: loads with the official lvis API, LVIS frequency rules, masks, DataModule."""
from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import pytest
import torch
from lvis import LVIS

from otcls.data.lvis import LVISDataModule, detection_collate, image_path
from otcls.data.lvis_synth import category_weights, load_fashion_mnist, lvis_frequency, read_idx


def test_lvis_frequency_follows_lvis_definition():
    # LVIS: rare 1-10 training images, common 11-100, frequent > 100.
    assert [lvis_frequency(n) for n in (1, 10, 11, 100, 101)] == ["r", "r", "c", "c", "f"]


def test_category_weights_ratio():
    p = category_weights(10, 100.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] / p[-1] == pytest.approx(100.0)
    assert np.all(np.diff(p) < 0)


def test_read_idx_matches_written_file(fmnist_root):
    x, y = load_fashion_mnist(fmnist_root, "train")
    assert x.shape == (40, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [4] * 10
    with pytest.raises(ValueError, match="magic"):
        path = os.path.join(fmnist_root, "bad.gz")
        import gzip
        with gzip.open(path, "wb") as f:
            f.write(b"\x01\x02\x03\x04")
        read_idx(path)


def test_missing_fmnist_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path), "train")


def test_generated_set_loads_with_lvis_api(demo_root):
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        lvis = LVIS(os.path.join(demo_root, "annotations", f"lvis_v1_{split}.json"))
        cats = lvis.load_cats(None)
        assert sorted(lvis.get_cat_ids()) == list(range(1, 11))
        per_img = defaultdict(set)
        for ann in lvis.load_anns(None):
            per_img[ann["image_id"]].add(ann["category_id"])
            mask = lvis.ann_to_mask(ann)  # polygons -> mask through the official API
            assert mask.sum() == pytest.approx(ann["area"])
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        for img in lvis.load_imgs(None):
            assert image_path(os.path.join(demo_root, "coco"), img).endswith(os.path.join(folder, f"{img['id']:012d}.png"))
            assert os.path.isfile(image_path(os.path.join(demo_root, "coco"), img))
            # exhaustive annotation: every absent category is a verified negative
            assert set(img["neg_category_ids"]) == set(range(1, 11)) - per_img[img["id"]]
            assert img["not_exhaustive_category_ids"] == []
        if split == "train":
            for c in cats:  # frequency recomputed from the annotations, LVIS's rule
                n_img = len({a["image_id"] for a in lvis.load_anns(None) if a["category_id"] == c["id"]})
                assert c["image_count"] == n_img
                assert c["frequency"] == ("r" if n_img <= 10 else "c" if n_img <= 100 else "f")


def test_datamodule_targets(demo_root):
    dm = LVISDataModule(root=demo_root, batch_size=3)
    dm.setup()
    assert dm.num_classes == 10 and len(dm.class_counts) == 10
    train = json.load(open(os.path.join(demo_root, "annotations", "lvis_v1_train.json")))
    assert dm.class_counts == [c["instance_count"] for c in sorted(train["categories"], key=lambda c: c["id"])]
    images, targets = next(iter(dm.val_dataloader()))
    assert len(images) == 3 and images[0].shape == (3, 64, 64) and images[0].dtype == torch.float32
    for img, t in zip(images, targets):
        n = len(t["labels"])
        assert t["boxes"].shape == (n, 4) and t["masks"].shape == (n, 64, 64)
        assert t["labels"].min() >= 1 and t["labels"].max() <= 10
        for box, mask in zip(t["boxes"], t["masks"]):  # xyxy box is the mask's extent
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    assert detection_collate([(1, "a"), (2, "b")]) == ([1, 2], ["a", "b"])


def test_datamodule_bad_input(tmp_path, demo_root):
    with pytest.raises(ValueError, match="make-lvis-demo"):
        LVISDataModule(root=str(tmp_path))
    with pytest.raises(ValueError, match="count_field"):
        LVISDataModule(root=demo_root, count_field="frequency")


def test_make_lvis_demo_command(fmnist_root, tmp_path, capsys):
    from otcls.cli import main

    out = str(tmp_path / "demo")
    assert main(["make-lvis-demo", "--out", out, "--fmnist-root", fmnist_root, "--train-images", "40",
                 "--val-images", "3", "--canvas", "48", "--min-size", "12", "--max-size", "20",
                 "--imbalance", "1"]) == 0
    assert "lvis_v1_train.json" in capsys.readouterr().out
    assert len(os.listdir(os.path.join(out, "coco", "val2017"))) == 3
    with pytest.raises(ValueError, match="min_size"):
        main(["make-lvis-demo", "--out", out, "--fmnist-root", fmnist_root, "--min-size", "4"])
