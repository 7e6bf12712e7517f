"""Accuracy by class and by shot group (torchmetrics), for one set of predictions."""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix


def evaluate_predictions(preds: torch.Tensor, targets: torch.Tensor, num_classes: int,
                         groups: Dict[str, Sequence[int]]) -> Dict[str, object]:
    """Top-1, per-class and shot-group accuracy (in %), plus the confusion matrix (rows = true class).

    A class without test samples has per-class accuracy NaN; a shot group accuracy is the share of
    correct test samples whose true class is in the group, NaN when the group has no test sample
    (e.g. CIFAR10-LT has no few-shot class) — never 0.
    """
    if preds.shape != targets.shape or preds.dim() != 1:
        raise ValueError(f"preds and targets must be 1-D of equal length; got {tuple(preds.shape)} and {tuple(targets.shape)}")
    preds, targets = preds.long().cpu(), targets.long().cpu()
    conf = multiclass_confusion_matrix(preds, targets, num_classes)
    support = conf.sum(1)
    per_class = torch.where(support > 0, conf.diag() / support.clamp(min=1), torch.full_like(support, float("nan"), dtype=torch.float))
    out: Dict[str, object] = {
        "top1": 100.0 * float(multiclass_accuracy(preds, targets, num_classes, average="micro")) if len(targets) else float("nan"),
        "n": int(len(targets)),
    }
    for name, classes in groups.items():
        idx = torch.as_tensor(list(classes), dtype=torch.long)
        n = int(support[idx].sum()) if len(idx) else 0
        out[name] = 100.0 * float(conf.diag()[idx].sum()) / n if n else float("nan")
    out["per_class"] = [100.0 * float(v) for v in per_class]
    out["confusion"] = conf.tolist()
    return out

