"""The official LVIS v1 layout (COCO JPEGs incl. grayscale, coco_url paths, non-contiguous category ids,
val images in train2017/): loading, class counts, flips, LVISEval, one fit step, and DDP = one process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from otcls.data.lvis import LVISDataModule, LVISDetection, category_counts
from otcls.tasks.lvis_eval import detections_to_lvis, evaluate_lvis

from .conftest import OFFICIAL_SIZE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs", "lvis")


def _json(root, split):
    with open(os.path.join(root, "annotations", f"lvis_v1_{split}.json")) as fh:
        return json.load(fh)


def test_loads_jpegs_grayscale_and_val_images_from_both_folders(official_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counts agree with the JSON: no warning
        dm = LVISDataModule(root=official_root, batch_size=2, hflip=0.0)
    dm.setup()
    assert dm.category_ids == [3, 17, 42, 1203] and dm.cat_to_label == {3: 1, 17: 2, 42: 3, 1203: 4}
    train = _json(official_root, "train")
    assert dm.class_counts == [c["instance_count"] for c in train["categories"]]
    gray = [i for i, img in enumerate(train["images"]) if i % 3 == 2][0]
    ds = LVISDetection(dm.train_lvis, dm.image_root, dm.cat_to_label)
    image, target = ds[gray]
    assert image.shape == (3, *OFFICIAL_SIZE)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # grayscale JPEG → 3 equal channels
    by_id = {a["id"]: a for a in train["annotations"]}
    ann = [a for a in by_id.values() if a["image_id"] == target["image_id"]][0]
    assert target["labels"][0].item() == dm.cat_to_label[ann["category_id"]]
    folders = set()
    for images, targets in dm.val_dataloader():
        for t in targets:
            img = dm.val_lvis.imgs[t["image_id"]]
            folders.add(img["coco_url"].split("/")[-2])
    assert folders == {"train2017", "val2017"}


def test_class_counts_come_from_the_training_images_used(official_root):
    train = _json(official_root, "train")
    cats = [c["id"] for c in train["categories"]]
    first = sorted(img["id"] for img in train["images"])[:6]
    anns = [a for a in train["annotations"] if a["image_id"] in first]
    want_inst = [sum(a["category_id"] == c for a in anns) for c in cats]
    want_img = [len({a["image_id"] for a in anns if a["category_id"] == c}) for c in cats]
    if 0 in want_inst:
        with pytest.raises(ValueError, match="no training annotation in the 6 training images used"):
            LVISDataModule(root=official_root, max_train_images=6)
    dm = LVISDataModule(root=official_root, max_train_images=6, count_source="json")
    assert dm.class_counts == [c["instance_count"] for c in train["categories"]]
    assert category_counts(dm.train_lvis, first, cats, "instance_count") == want_inst
    assert category_counts(dm.train_lvis, first, cats, "image_count") == want_img
    images = LVISDataModule(root=official_root, count_field="image_count")
    assert images.class_counts == [c["image_count"] for c in train["categories"]]
    with pytest.raises(ValueError, match="no training annotation in the 1 training images used"):
        LVISDataModule(root=official_root, max_train_images=1)
    with pytest.raises(ValueError, match="count_source must be one of"):
        LVISDataModule(root=official_root, count_source="file")


def test_json_counts_that_disagree_with_the_annotations_warn(official_root, tmp_path):
    import shutil

    root = str(tmp_path / "edited")
    shutil.copytree(official_root, root)
    train = _json(root, "train")
    train["categories"][0]["instance_count"] += 5
    with open(os.path.join(root, "annotations", "lvis_v1_train.json"), "w") as fh:
        json.dump(train, fh)
    with pytest.warns(UserWarning, match=r"1 categories' instance_count .* differ from its annotations"):
        dm = LVISDataModule(root=root)
    assert dm.class_counts[0] == train["categories"][0]["instance_count"] - 5


def test_horizontal_flip_moves_image_boxes_and_masks_together(official_root):
    dm = LVISDataModule(root=official_root)
    plain = LVISDetection(dm.train_lvis, dm.image_root, dm.cat_to_label, hflip=0.0)
    flipped = LVISDetection(dm.train_lvis, dm.image_root, dm.cat_to_label, hflip=1.0)
    width = OFFICIAL_SIZE[1]
    for k in range(4):
        (img, t), (fimg, ft) = plain[k], flipped[k]
        assert torch.equal(fimg, img.flip(-1)) and torch.equal(ft["masks"], t["masks"].flip(-1))
        x1, y1, x2, y2 = t["boxes"].unbind(1)
        assert torch.allclose(ft["boxes"], torch.stack([width - x2, y1, width - x1, y2], 1))
        assert torch.equal(ft["labels"], t["labels"])
        for box, mask in zip(ft["boxes"], ft["masks"]):  # the flipped box still bounds the flipped mask
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    with pytest.raises(ValueError, match="hflip is a probability"):
        LVISDataModule(root=official_root, hflip=2.0)


def test_ground_truth_as_detections_scores_ap_one_with_lvis_ids(official_root):
    dm = LVISDataModule(root=official_root, batch_size=2)
    dm.setup()
    outputs, ids = [], []
    for _, targets in dm.val_dataloader():
        for t in targets:
            outputs.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["boxes"])),
                            "masks": t["masks"][:, None].float()})
            ids.append(t["image_id"])
    records = detections_to_lvis(outputs, ids, dm.category_ids)
    assert {r["category_id"] for r in records} <= {3, 17, 42, 1203}
    metrics = evaluate_lvis(dm.val_lvis, records, ids)
    assert metrics["segm/AP"] == pytest.approx(1.0) and metrics["bbox/AP"] == pytest.approx(1.0)


def _cli(args, env_extra=None, timeout=400):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


SETTINGS = "[softmax, class_bias:uniform, dbot:train]"


def _lvis_args(root, run_dir, extra=()):
    return ["--config", f"{CFG}/base/demo.yaml", "--config", f"{CFG}/demo/balanced_softmax.yaml",
            "--data.init_args.root", root, "--data.init_args.eval_batch_size", "1",
            "--model.init_args.min_size", "64", "--model.init_args.max_size", "64",
            "--model.init_args.box_score_thresh", "0.0", "--model.init_args.inference", SETTINGS,
            "--trainer.default_root_dir", run_dir, "--trainer.enable_progress_bar", "false", *extra]


@pytest.mark.timeout(900)
def test_fit_step_then_test_on_two_processes_equals_one(official_root, tmp_path):
    """One training step on the official layout, then LVISEval of every box-inference setting with 1 and 2
    gloo processes on 5 val images (the sampler pads to 6; the padded image must count once)."""
    fit_dir = str(tmp_path / "fit")
    _cli(["fit", *_lvis_args(official_root, fit_dir, ["--trainer.max_steps", "2", "--test_after_fit", "false"])])
    ckpt = os.path.join(fit_dir, "checkpoints", "last.ckpt")
    assert os.path.isfile(ckpt)
    results = {}
    for name, extra in (("one", []), ("two", ["--trainer.strategy", "ddp", "--trainer.devices", "2"])):
        run_dir = str(tmp_path / name)
        own = os.path.join(run_dir, "model.ckpt")  # otcls test writes model.test_results.json beside it
        os.makedirs(run_dir)
        shutil.copy(ckpt, own)
        proc = _cli(["test", *_lvis_args(official_root, run_dir, extra), "--ckpt_path", own])
        with open(os.path.join(run_dir, "model.test_results.json")) as fh:
            results[name] = json.load(fh)
        if name == "two":
            assert "sync_dist" not in proc.stderr
    one, two = results["one"], results["two"]
    assert list(one["by_inference"]) == ["softmax", "class_bias:uniform", "dbot:train"]
    assert one["inference"] == "softmax" and one["metrics"] == one["by_inference"]["softmax"]
    for setting, metrics in one["by_inference"].items():
        assert set(metrics) >= {"segm/AP", "bbox/AP", "segm/APr"}
        assert two["by_inference"][setting] == pytest.approx(metrics, abs=1e-12), setting


def test_a_padded_image_counts_once_when_ranks_are_merged(official_root):
    """5 val images on 2 ranks: the sampler gives rank 1 a repeat of image 0. Ground truth fed back as
    detections scores AP 1 once merged per image id; counted twice, the repeat's boxes are false positives."""
    from torch.utils.data import DistributedSampler

    from otcls.tasks.lvis_eval import merge_rank_detections

    dm = LVISDataModule(root=official_root)
    dm.setup()
    ds = LVISDetection(dm.val_lvis, dm.image_root, dm.cat_to_label)
    parts = []
    for rank in range(2):
        per_image = {}
        for k in DistributedSampler(range(len(ds)), num_replicas=2, rank=rank, shuffle=False):
            _, t = ds[k]
            out = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["boxes"])),
                   "masks": t["masks"][:, None].float()}
            per_image[t["image_id"]] = detections_to_lvis([out], [t["image_id"]], dm.category_ids)
        parts.append({"softmax": per_image})
    ids = sorted(dm.val_lvis.get_img_ids())
    assert len(ids) == 5 and sum(len(p["softmax"]) for p in parts) == 6  # one padded repeat
    merged = merge_rank_detections(parts)["softmax"]
    assert sorted(merged) == ids
    good = evaluate_lvis(dm.val_lvis, [r for i in ids for r in merged[i]], ids)
    assert good["segm/AP"] == pytest.approx(1.0) and good["bbox/AP"] == pytest.approx(1.0)
    doubled = [r for p in parts for recs in p["softmax"].values() for r in recs]
    assert evaluate_lvis(dm.val_lvis, doubled, ids)["bbox/AP"] < 0.99
