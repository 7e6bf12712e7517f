"""Training losses for long-tailed classification, one registry from names to classes.

Every loss is ``loss(logits (B, C), targets (B,)) -> scalar``; build one by name with
:func:`build_loss`. Each submodule registers its losses on import.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

from torch import nn

from otcls.losses.base import ClassificationLoss, Counts
from otcls.losses.registry import LOSSES
from otcls.losses import baselines  # noqa: F401  (registers ce, focal, ldam, logit_adjust, cb_*, balanced_softmax)
from otcls.losses import reot  # noqa: F401  (registers reot)
from otcls.losses import dbot  # noqa: F401  (registers dbot)
from otcls.losses import contrastive  # noqa: F401  (registers nt_xent, supcon, reot_contrastive)


def build_loss(name: str, *, num_classes: int, class_counts: Optional[Counts] = None, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` (e.g. ``"reot"``) with its keyword options."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss '{name}'; choose one of: {', '.join(LOSSES.names())}")
    cls = LOSSES.get(name)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "num_classes", "class_counts"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for loss '{name}'; valid options: {sorted(allowed)}")
    return cls(num_classes=num_classes, class_counts=class_counts, **kwargs)


__all__ = ["LOSSES", "build_loss", "ClassificationLoss"]
