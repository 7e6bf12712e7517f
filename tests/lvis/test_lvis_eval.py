"""LVISEval glue: ground truth fed back as predictions scores AP 1.0; a hand-computed partial case."""
from __future__ import annotations

import os

import pytest
import torch
from lvis import LVIS

from otcls.data.lvis import LVISDataModule
from otcls.tasks.lvis_eval import METRICS, detections_to_lvis, evaluate_lvis


def _outputs_from_targets(dm: LVISDataModule, shrink: float = 1.0):
    """torchvision-style outputs made from the val targets (score 1, masks as probabilities)."""
    outputs, ids = [], []
    for images, targets in dm.val_dataloader():
        for t in targets:
            boxes = t["boxes"].clone()
            boxes[:, 3] = boxes[:, 1] + shrink * (boxes[:, 3] - boxes[:, 1])
            outputs.append({"boxes": boxes, "labels": t["labels"], "scores": torch.ones(len(boxes)),
                            "masks": t["masks"][:, None].float()})
            ids.append(t["image_id"])
    return outputs, ids


def test_ground_truth_as_predictions_gives_ap_one(demo_root):
    dm = LVISDataModule(root=demo_root, batch_size=4)
    dm.setup()
    outputs, ids = _outputs_from_targets(dm)
    records = detections_to_lvis(outputs, ids, dm.category_ids)
    assert len(records) == len(dm.val_lvis.get_ann_ids())
    metrics = evaluate_lvis(dm.val_lvis, records, ids)
    for iou_type in ("segm", "bbox"):
        assert metrics[f"{iou_type}/AP"] == pytest.approx(1.0)
        assert metrics[f"{iou_type}/AP50"] == pytest.approx(1.0)
        assert metrics[f"{iou_type}/AP75"] == pytest.approx(1.0)
        for group in ("APr", "APc", "APf"):  # 1.0 where the group has categories, -1 (LVIS's "absent") if not
            assert metrics[f"{iou_type}/{group}"] in (pytest.approx(1.0), -1.0)
    freqs = {c["frequency"] for c in dm.categories}
    assert any(metrics[f"segm/AP{g}"] == pytest.approx(1.0) for g in freqs)


def test_boxes_at_iou_062_match_three_of_ten_thresholds(demo_root):
    # Each predicted box keeps 62 % of its ground-truth box's height, inside it: IoU = 0.62, a match at
    # the thresholds 0.50, 0.55, 0.60 only, with perfect precision there, so every AP is 3/10.
    dm = LVISDataModule(root=demo_root, batch_size=4)
    dm.setup()
    outputs, ids = _outputs_from_targets(dm, shrink=0.62)
    for o in outputs:
        del o["masks"]
    metrics = evaluate_lvis(dm.val_lvis, detections_to_lvis(outputs, ids, dm.category_ids), ids, iou_types=["bbox"])
    assert metrics["bbox/AP"] == pytest.approx(0.3)
    assert metrics["bbox/AP50"] == pytest.approx(1.0)
    assert metrics["bbox/AP75"] == pytest.approx(0.0)


def test_bad_inputs(demo_root):
    gt = LVIS(os.path.join(demo_root, "annotations", "lvis_v1_val.json"))
    out = [{"boxes": torch.zeros(1, 4), "labels": torch.tensor([0]), "scores": torch.ones(1)}]
    with pytest.raises(ValueError, match="background"):
        detections_to_lvis(out, [1], list(range(1, 11)))
    with pytest.raises(ValueError, match="image ids"):
        detections_to_lvis(out, [1, 2], list(range(1, 11)))
    with pytest.raises(ValueError, match="iou_types"):
        evaluate_lvis(gt, [], [1], iou_types=["keypoints"])
    assert evaluate_lvis(gt, [], gt.get_img_ids()) == {f"{t}/{m}": 0.0 for t in ("segm", "bbox") for m in METRICS}
