"""Box-classifier inference: the loss's logit scale, the head's prior-aware / OT modes, one backbone pass."""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads

from otcls.data.lvis import LVISDataModule
from otcls.models.box_inference import box_prior, box_scores, detect, parse_setting
from otcls.models.mask_rcnn import build_mask_rcnn

COUNTS = [40, 20, 9, 5, 3, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def images(demo_root):
    dm = LVISDataModule(root=demo_root, batch_size=2, hflip=False)
    return next(iter(dm.train_dataloader()))[0]


def _model(**kw):
    torch.manual_seed(0)
    return build_mask_rcnn(10, backbone="resnet18_c3", min_size=64, max_size=64, box_batch_size_per_image=32,
                           detections_per_img=20, box_score_thresh=0.0, class_counts=COUNTS, **kw).eval()


def _roi_inputs(model, images):
    """The RoI head's inputs for ``images``: features, proposals, class logits, box deltas, image sizes."""
    with torch.no_grad():
        batch, _ = model.transform(images)
        features = {"0": model.backbone(batch.tensors)}
        proposals, _ = model.rpn(batch, features)
        heads = model.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, batch.image_sizes))
        logits, deltas = heads.box_predictor(box_features)
    return logits, deltas, proposals, batch.image_sizes


def test_ldam_cosine_scores_use_the_loss_scale(images):
    """LDAM trains on s·cos (s = 30): detections must score softmax(30·cos), as torchvision would on 30·logits."""
    model = _model(loss="ldam", loss_kwargs={"s": 30.0}, classifier="cosine", scale=1.0)
    logits, deltas, proposals, sizes = _roi_inputs(model, images)
    assert logits.abs().max() <= 1.0 + 1e-6
    ours = model.roi_heads.postprocess_detections(logits, deltas, proposals, sizes)
    ref = RoIHeads.postprocess_detections(model.roi_heads, 30.0 * logits, deltas, proposals, sizes)
    for got, want in zip(ours, ref):  # boxes, scores, labels per image
        for g, w in zip(got, want):
            assert torch.allclose(g, w, atol=1e-5)
    raw = RoIHeads.postprocess_detections(model.roi_heads, logits, deltas, proposals, sizes)
    top = max(float(s.max()) for s in ours[1])
    assert top > 3 * max(float(s.max()) for s in raw[1])  # raw cosines give near-uniform scores over K+1


def test_box_prior_keeps_the_background_share():
    head = _model(loss="ce").roi_heads.box_predictor.head
    total = 4 * sum(COUNTS)  # background count 3·Σn
    bg = 3 * sum(COUNTS) / total
    for mode in ("class_bias", "dbot"):  # CE is calibrated to the training ratio: both use its share
        train = box_prior(head, "train", mode)
        assert torch.allclose(train, torch.tensor([3 * sum(COUNTS), *COUNTS], dtype=torch.float64) / total)
        uniform = box_prior(head, "uniform", mode)
        assert torch.allclose(uniform, torch.tensor([bg] + [(1 - bg) / 10] * 10, dtype=torch.float64))
    # Balanced Softmax is calibrated to uniform over K+1: class_bias keeps background at 1/11, OT at 3/4
    balanced = _model(loss="balanced_softmax").roi_heads.box_predictor.head
    assert torch.allclose(box_prior(balanced, "uniform", "class_bias"), torch.full((11,), 1 / 11, dtype=torch.float64))
    assert torch.allclose(box_prior(balanced, "uniform", "reot"), uniform)
    z = torch.randn(7, 11, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(box_scores(balanced, z, "class_bias:uniform"), z.softmax(1), atol=1e-6)


def test_class_bias_and_dbot_box_scores():
    head = _model(loss="ce").roi_heads.box_predictor.head.double()
    z = torch.randn(60, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    source = torch.tensor([3 * sum(COUNTS), *COUNTS], dtype=torch.float64)
    source = source / source.sum()
    b = box_prior(head, "uniform", "class_bias")
    assert torch.allclose(box_scores(head, z, "class_bias:uniform"), (z - source.log() + b.log()).softmax(1))
    scores = box_scores(head, z, "dbot:uniform", eps=1.0, delta=0.1, tol=1e-9, max_iter=20000)
    cols = scores.sum(0) / 60
    assert torch.allclose(scores.sum(1), torch.ones(60, dtype=torch.float64))
    assert (cols >= 0.9 * b - 1e-6).all() and (cols <= 1.1 * b + 1e-6).all()


def test_detect_runs_the_backbone_once_and_matches_the_model(images):
    model = _model(loss="ce")
    calls = []
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        ref = model(images)
    out = detect(model, images, ["softmax", "class_bias:uniform", "reot:train"])
    assert len(calls) == 2 and list(out) == ["softmax", "class_bias:uniform", "reot:train"]
    for got, want in zip(out["softmax"], ref):
        assert torch.equal(got["labels"], want["labels"]) and torch.allclose(got["scores"], want["scores"])
        assert torch.allclose(got["masks"], want["masks"])
    assert model.roi_heads.inference == "softmax"  # restored
    assert not all(torch.allclose(a["scores"], b["scores"]) for a, b in zip(out["softmax"], out["class_bias:uniform"])
                   if len(a["scores"]) == len(b["scores"]))


def test_bad_settings():
    assert parse_setting("dbot:train") == ("dbot", "train") and parse_setting("softmax") == ("softmax", None)
    with pytest.raises(ValueError, match="unknown box inference mode 'sotfmax'"):
        parse_setting("sotfmax")
    with pytest.raises(ValueError, match="needs a prior: 'dbot:<prior>'"):
        parse_setting("dbot")
    with pytest.raises(ValueError, match="takes no prior"):
        parse_setting("softmax:uniform")
    with pytest.raises(ValueError, match="box inference mode 'x'"):
        build_mask_rcnn(10, backbone="resnet18_c3", inference="x")
