"""Mask R-CNN glue: the injected box loss, the background count, RE-OT = CE when Q is uniform."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads

from otcls.data.lvis import LVISDataModule
from otcls.models.mask_rcnn import OTRoIHeads, build_mask_rcnn, counts_with_background

COUNTS = [40, 20, 9, 5, 3, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def batch(demo_root):
    dm = LVISDataModule(root=demo_root, batch_size=2)
    return next(iter(dm.train_dataloader()))


def _model(**kw):
    torch.manual_seed(0)
    return build_mask_rcnn(10, backbone="resnet18_c3", min_size=64, max_size=64, box_batch_size_per_image=32,
                           detections_per_img=20, box_score_thresh=0.0, **kw)


def _stock(h: OTRoIHeads) -> RoIHeads:
    """torchvision's own RoIHeads on the same modules (its box loss is F.cross_entropy)."""
    return RoIHeads(h.box_roi_pool, h.box_head, h.box_predictor, h.proposal_matcher.high_threshold,
                    h.proposal_matcher.low_threshold, h.fg_bg_sampler.batch_size_per_image,
                    h.fg_bg_sampler.positive_fraction, h.box_coder.weights, h.score_thresh, h.nms_thresh,
                    h.detections_per_img, mask_roi_pool=h.mask_roi_pool, mask_head=h.mask_head,
                    mask_predictor=h.mask_predictor)


def _losses(model, batch, seed=1):
    images, targets = batch
    model.train()
    torch.manual_seed(seed)  # same RPN / RoI sampling in every call
    return model(images, targets)


def _torchvision_ce(model, batch):
    ours = model.roi_heads
    model.roi_heads = _stock(ours)
    try:
        return _losses(model, batch)
    finally:
        model.roi_heads = ours


def test_counts_with_background_hand_checked():
    assert counts_with_background([3, 1]) == [12.0, 3.0, 1.0]  # (1-0.25)/0.25 * 4
    assert counts_with_background([3, 1], positive_fraction=0.5) == [4.0, 3.0, 1.0]
    assert counts_with_background([3, 1], background_count=7) == [7.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="positive_fraction"):
        counts_with_background([3, 1], positive_fraction=1.0)


def test_reot_with_uniform_q_equals_torchvision_ce(batch):
    # Q = (1-λ)·U + λ·r is uniform for λ = 0 (any counts) and for λ = 1 with equal counts (background too).
    for kw in (dict(class_counts=COUNTS, loss_kwargs={"prior": "ratio", "lam": 0.0}),
               dict(class_counts=[5] * 10, background_count=5, loss_kwargs={"prior": "ratio", "lam": 1.0})):
        model = _model(loss="reot", **kw)
        ours = _losses(model, batch)
        ref = _torchvision_ce(model, batch)
        assert ours["loss_classifier"].item() == pytest.approx(ref["loss_classifier"].item(), rel=1e-5)
        for k in ("loss_box_reg", "loss_mask", "loss_objectness"):
            assert ours[k].item() == pytest.approx(ref[k].item(), rel=1e-5)


def test_injected_loss_is_balanced_softmax_with_background(batch):
    model = _model(loss="balanced_softmax", class_counts=COUNTS)
    seen = {}
    model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("logits", o[0]))
    select = model.roi_heads.select_training_samples

    def spy(proposals, targets):
        out = select(proposals, targets)
        seen["labels"] = torch.cat(out[2])
        return out

    model.roi_heads.select_training_samples = spy
    loss = _losses(model, batch)["loss_classifier"]
    counts = torch.tensor([3.0 * sum(COUNTS)] + COUNTS)  # background = (1-p)/p·Σn, p = 0.25
    expected = F.cross_entropy(seen["logits"] + counts.log(), seen["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert (seen["labels"] == 0).any() and (seen["labels"] > 0).any()
    plain = F.cross_entropy(seen["logits"], seen["labels"])
    assert not math.isclose(loss.item(), plain.item(), rel_tol=1e-3)
    loss.backward()
    assert model.roi_heads.box_predictor.head.classifier.weight.grad.abs().sum() > 0


def test_inference_outputs(batch):
    model = _model(loss="ce").eval()
    with torch.no_grad():
        out = model(batch[0])
    for o in out:
        n = len(o["boxes"])
        assert o["labels"].shape == (n,) and o["masks"].shape == (n, 1, 64, 64)
        assert n == 0 or (o["labels"].min() >= 1 and o["labels"].max() <= 10)


def test_build_errors():
    with pytest.raises(ValueError, match="backbone"):
        build_mask_rcnn(10, backbone="vgg")
    with pytest.raises(ValueError, match="class_counts has 3 entries"):
        build_mask_rcnn(10, class_counts=[1, 2, 3], backbone="resnet18_c3")
    with pytest.raises(ValueError, match="pretrained"):
        build_mask_rcnn(10, backbone="resnet18_c3", pretrained_backbone=True)
