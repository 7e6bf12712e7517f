"""Pieces every LightningModule in otcls shares: the head built from hyperparameters."""
from __future__ import annotations

from typing import List, Optional

import lightning as L


def build_head_from_hparams(module: L.LightningModule, in_features: int, num_classes: int,
                            class_counts: Optional[List[int]]):
    """``TransportHead`` from ``module.hparams`` (loss, loss_kwargs, classifier, head_kwargs).

    ``num_classes`` / ``class_counts`` (usually from the DataModule at setup) are written back into
    the hyperparameters, so a checkpoint rebuilds the same head with ``load_from_checkpoint``.
    """
    from otcls.heads import TransportHead

    if class_counts is not None and len(class_counts) != num_classes:
        raise ValueError(f"class_counts has {len(class_counts)} entries but num_classes={num_classes}")
    resolved = dict(num_classes=int(num_classes),
                    class_counts=None if class_counts is None else [int(c) for c in class_counts])
    module.hparams.update(resolved)  # saved in checkpoints
    module._hparams_initial.update(resolved)  # logged; must agree with the DataModule's hparams
    hp = module.hparams
    return TransportHead(in_features, num_classes, loss=hp.loss, loss_kwargs=hp.loss_kwargs,
                         class_counts=class_counts, classifier=hp.classifier, **(hp.head_kwargs or {}))
