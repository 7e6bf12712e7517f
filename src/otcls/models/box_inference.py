"""Test-time scoring of a Mask R-CNN's RoIs with the box head's inference modes.

A setting is ``softmax``, ``tau_norm`` or ``<mode>:<prior>`` with mode ``class_bias``, ``reot`` or
``dbot`` and prior ``train``, ``uniform`` or ``estimated``. Scores come from
:meth:`TransportHead.predict_scores` on the ``K+1`` logits of all RoIs of a batch (OT modes couple
those RoIs; ``softmax`` and ``class_bias`` score each RoI on its own).

Background (index 0) is not a long-tail class, so a prior is built over the foreground and the
background keeps a fixed share β: ``b = [β, (1 - β)·π]`` with π the named prior over the ``K``
categories (``train``: their training ratio, ``uniform``: ``1/K``). ``class_bias`` re-weights only
among the categories: β is the background share of the prior the softmax is calibrated to, so a
balanced loss's background scores are left as they are (otherwise the score threshold would drop
its detections). The OT settings need the background's real share of the RoIs to couple them: β is
its training share (``1 - p`` of the sampled RoIs). ``estimated`` runs EM over all ``K+1`` outputs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from otcls.inference.priors import resolve_prior
from otcls.inference.scores import MODES, PRIOR_MODES

BOX_PRIORS = ("train", "uniform", "estimated")


def parse_setting(setting: str) -> Tuple[str, Optional[str]]:
    """``"dbot:uniform"`` → ``("dbot", "uniform")``; ``"softmax"`` → ``("softmax", None)``."""
    mode, _, prior = str(setting).partition(":")
    if mode not in MODES:
        raise ValueError(f"unknown box inference mode '{mode}' in '{setting}'; choose one of: {', '.join(MODES)}")
    if mode in PRIOR_MODES and prior not in BOX_PRIORS:
        raise ValueError(f"box inference '{setting}' needs a prior: '{mode}:<prior>' with <prior> one of "
                         f"{', '.join(BOX_PRIORS)}")
    if mode not in PRIOR_MODES and prior:
        raise ValueError(f"box inference mode '{mode}' takes no prior; got '{setting}'")
    return mode, (prior or None)


def box_prior(head: Any, prior: str, mode: str) -> Any:
    """The ``K+1`` test prior of ``prior`` for ``mode`` (module doc); ``estimated`` is left to the head (EM)."""
    if prior == "estimated":
        return prior
    if head.class_counts is None:
        raise ValueError(f"box inference with prior '{prior}' needs the training class counts (class_counts)")
    counts = head.class_counts.double()
    background = head.calibrated_prior()[0] if mode == "class_bias" else counts[0] / counts.sum()
    foreground = resolve_prior(prior, head.num_classes - 1, class_counts=counts[1:])
    return torch.cat([background[None], (1.0 - background) * foreground])


def box_scores(head: Any, logits: torch.Tensor, setting: str, **kwargs: Any) -> torch.Tensor:
    """``(R, K+1)`` scores of the RoIs' logits under ``setting``; rows sum to 1."""
    mode, prior = parse_setting(setting)
    if logits.shape[0] == 0:
        return logits.softmax(-1)
    test_prior = "uniform" if prior is None else box_prior(head, prior, mode)
    if isinstance(test_prior, torch.Tensor):
        test_prior = test_prior.to(logits)
    return head.predict_scores(logits, mode=mode, test_prior=test_prior, **kwargs)


@torch.no_grad()
def detect(model: torch.nn.Module, images: List[torch.Tensor], settings: Sequence[str]) -> Dict[str, List[Dict]]:
    """Detections of every setting; backbone and RPN run once, the RoI heads once per setting.

    ``model``: a Mask R-CNN built by :func:`otcls.models.mask_rcnn.build_mask_rcnn` in eval mode.
    """
    original_sizes = [tuple(int(s) for s in im.shape[-2:]) for im in images]
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = model.rpn(batch, features)
    out: Dict[str, List[Dict]] = {}
    roi_heads = model.roi_heads
    previous = roi_heads.inference
    try:
        for setting in settings:
            roi_heads.inference = setting
            detections, _ = roi_heads(features, proposals, batch.image_sizes)
            out[setting] = model.transform.postprocess(detections, batch.image_sizes, original_sizes)
    finally:
        roi_heads.inference = previous
    return out
