"""torchvision Mask R-CNN whose RoI box classifier is a :class:`~otcls.heads.TransportHead`.

Box classification has ``K + 1`` outputs: index 0 is torchvision's **background** class,
``1..K`` the dataset categories. Background is not a long-tail class, yet the prior-based
losses (Balanced Softmax, RE-OT, LDAM, CB, ...) need a count for every output. We give it
the number of background RoIs the sampler is built to draw per foreground RoI:
``n_bg = (1 - p) / p · Σ_j n_j`` with ``p`` the sampler's positive fraction (0.25 by
default, so ``n_bg = 3 Σ n``). The class ratio the losses see is then the expected label
ratio of the sampled RoIs, ``r_0 = 1 - p`` and ``r_j = p · n_j / Σ n`` — background weighs
as a (very) frequent class and the long-tail re-balancing acts among the foreground
categories. :func:`counts_with_background` computes it; pass ``background_count`` to
override.

The loss is injected, not patched: :class:`OTRoIHeads` is a ``RoIHeads`` subclass that lets
torchvision's code run unchanged and replaces ``loss_classifier`` with
``box_cls_loss(class_logits (R, K+1), labels (R,))`` on the same sampled RoIs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet18
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from otcls.heads import TransportHead
from otcls.models.box_inference import box_scores, parse_setting

BACKBONES = ("resnet50_fpn", "resnet18_c3")


def counts_with_background(class_counts: Sequence[float], positive_fraction: float = 0.25,
                           background_count: Optional[float] = None) -> List[float]:
    """``[n_bg, n_1, ..., n_K]`` with ``n_bg = (1-p)/p · Σ n`` unless ``background_count`` is given."""
    counts = [float(c) for c in class_counts]
    if not counts or min(counts) < 0:
        raise ValueError(f"class_counts must be a non-empty list of non-negative counts, got {class_counts}")
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"positive_fraction must lie in (0, 1), got {positive_fraction}")
    if background_count is None:
        background_count = (1.0 - positive_fraction) / positive_fraction * sum(counts)
    if background_count <= 0:
        raise ValueError(f"background_count must be > 0, got {background_count}")
    return [float(background_count)] + counts


class TransportBoxPredictor(nn.Module):
    """Box predictor: class logits from a TransportHead (``K+1`` classes), class-specific box deltas."""

    def __init__(self, in_channels: int, head: TransportHead) -> None:
        super().__init__()
        self.head = head
        self.bbox_pred = nn.Linear(in_channels, head.num_classes * 4)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(start_dim=1)
        return self.head(x), self.bbox_pred(x)


class OTRoIHeads(RoIHeads):
    """``RoIHeads`` with an injected box-classification loss ``box_cls_loss(logits, labels)``.

    Training runs torchvision's forward unchanged; the class logits of the sampled RoIs (read
    with a forward hook on ``box_predictor`` held only for that call) and their labels
    (``0`` = background) are passed to ``box_cls_loss``, whose value replaces
    ``loss_classifier``.

    Inference scores the RoIs with the box head's ``inference`` setting
    (:mod:`otcls.models.box_inference`; ``"softmax"`` by default, on the loss's calibrated logits,
    e.g. ``s·cos`` for LDAM) and ``inference_kwargs`` (``eps``, ``delta``, ``tau``); torchvision's
    post-processing (background dropped, score threshold, per-class NMS, top detections) follows.
    """

    def __init__(self, *args, box_cls_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 inference: str = "softmax", inference_kwargs: Optional[Dict[str, Any]] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        parse_setting(inference)
        self.box_cls_loss = box_cls_loss
        self.inference = inference
        self.inference_kwargs = dict(inference_kwargs or {})
        self._sampled_labels: Optional[torch.Tensor] = None

    @classmethod
    def from_roi_heads(cls, heads: RoIHeads, box_cls_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       inference: str = "softmax", inference_kwargs: Optional[Dict[str, Any]] = None
                       ) -> "OTRoIHeads":
        """Same modules and settings as ``heads`` (e.g. a built ``MaskRCNN().roi_heads``), new loss and scoring."""
        return cls(heads.box_roi_pool, heads.box_head, heads.box_predictor,
                   heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
                   heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
                   heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
                   mask_roi_pool=heads.mask_roi_pool, mask_head=heads.mask_head, mask_predictor=heads.mask_predictor,
                   box_cls_loss=box_cls_loss, inference=inference, inference_kwargs=inference_kwargs)

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        head = self.box_predictor.head
        scores = box_scores(head, class_logits, self.inference, **self.inference_kwargs)
        # torchvision applies softmax to what it gets; softmax(log s) = s for rows s that sum to 1.
        return super().postprocess_detections(scores.log(), box_regression, proposals, image_shapes)

    def select_training_samples(self, proposals, targets):
        proposals, matched_idxs, labels, regression_targets = super().select_training_samples(proposals, targets)
        self._sampled_labels = torch.cat(labels)
        return proposals, matched_idxs, labels, regression_targets

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        tap: Dict[str, torch.Tensor] = {}
        hook = self.box_predictor.register_forward_hook(lambda _m, _i, out: tap.__setitem__("logits", out[0]))
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
        finally:
            hook.remove()
        labels, self._sampled_labels = self._sampled_labels, None
        losses["loss_classifier"] = self.box_cls_loss(tap["logits"], labels)
        return result, losses


def _resnet18_c3() -> nn.Module:
    """ResNet-18 up to ``layer2`` (stride 8, 128 channels), random init: a light single-level CPU backbone."""
    r = resnet18(weights=None)
    body = nn.Sequential(OrderedDict([(n, getattr(r, n)) for n in
                                      ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")]))
    body.out_channels = 128
    return body


def build_mask_rcnn(num_classes: int, *, loss: str = "ce", loss_kwargs: Optional[Dict[str, Any]] = None,
                    class_counts: Optional[Sequence[float]] = None, background_count: Optional[float] = None,
                    classifier: str = "linear", scale: float = 16.0, backbone: str = "resnet50_fpn",
                    pretrained_backbone: bool = False, min_size: int = 800, max_size: int = 1333,
                    box_batch_size_per_image: int = 512, box_positive_fraction: float = 0.25,
                    detections_per_img: int = 300, box_score_thresh: float = 0.0001, inference: str = "softmax",
                    inference_kwargs: Optional[Dict[str, Any]] = None) -> MaskRCNN:
    """Mask R-CNN for ``num_classes`` foreground categories, box classifier = TransportHead over ``K+1``.

    ``loss``/``loss_kwargs``/``classifier``/``scale`` configure the head (see
    :class:`~otcls.heads.TransportHead`); ``class_counts`` are the K foreground counts, to which
    the background count is prepended (:func:`counts_with_background`). The head is
    ``model.roi_heads.box_predictor.head``.

    ``resnet50_fpn``: torchvision's ResNet-50-FPN Mask R-CNN (``pretrained_backbone`` loads the
    ImageNet weights, which needs the internet once). ``resnet18_c3``: a light single-level
    ResNet-18 (to ``layer2``) variant with small RoI heads for CPU runs on small images.
    LVIS settings by default: up to 300 detections per image, score threshold 1e-4.
    ``inference`` / ``inference_kwargs``: how RoIs are scored at test time (:class:`OTRoIHeads`).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone '{backbone}'; choose one of: {', '.join(BACKBONES)}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes (foreground categories) must be >= 1, got {num_classes}")
    counts = None
    if class_counts is not None:
        if len(class_counts) != num_classes:
            raise ValueError(f"class_counts has {len(class_counts)} entries for {num_classes} categories "
                             "(give foreground counts only; background is added)")
        counts = counts_with_background(class_counts, box_positive_fraction, background_count)
    head = TransportHead(1024 if backbone == "resnet50_fpn" else 256, num_classes + 1, loss=loss,
                         loss_kwargs=loss_kwargs, class_counts=counts, classifier=classifier, scale=scale)
    if backbone == "resnet50_fpn":
        weights = ResNet50_Weights.IMAGENET1K_V1 if pretrained_backbone else None
        # Frozen BN only makes sense over pretrained statistics; from scratch BN is trained.
        body = resnet_fpn_backbone(backbone_name="resnet50", weights=weights,
                                   norm_layer=FrozenBatchNorm2d if pretrained_backbone else nn.BatchNorm2d,
                                   trainable_layers=3 if pretrained_backbone else 5)
        model = MaskRCNN(body, box_predictor=TransportBoxPredictor(1024, head),
                         mask_predictor=MaskRCNNPredictor(256, 256, num_classes + 1), min_size=min_size, max_size=max_size,
                         box_batch_size_per_image=box_batch_size_per_image, box_positive_fraction=box_positive_fraction,
                         box_detections_per_img=detections_per_img, box_score_thresh=box_score_thresh)
    else:
        if pretrained_backbone:
            raise ValueError("backbone 'resnet18_c3' has no pretrained weights; set pretrained_backbone: false")
        body = _resnet18_c3()
        c = body.out_channels
        model = MaskRCNN(
            body, min_size=min_size, max_size=max_size,
            rpn_anchor_generator=AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),)),
            rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=150,
            rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=64,
            box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(c * 7 * 7, 256), box_predictor=TransportBoxPredictor(256, head),
            box_batch_size_per_image=box_batch_size_per_image, box_positive_fraction=box_positive_fraction,
            box_detections_per_img=detections_per_img, box_score_thresh=box_score_thresh,
            mask_roi_pool=MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(c, [64, 64], 1), mask_predictor=MaskRCNNPredictor(64, 64, num_classes + 1))
    model.roi_heads = OTRoIHeads.from_roi_heads(model.roi_heads, head.compute_loss, inference, inference_kwargs)
    return model
