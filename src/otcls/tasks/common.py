"""Pieces the LightningModules in otcls share: the head built from hyperparameters, the optimiser."""
from __future__ import annotations

import math
import os
from typing import Iterable, List, Optional, Tuple

import lightning as L
import torch


def checkpoint_sibling(ckpt_path: str, name: str) -> str:
    """``<checkpoint path without .ckpt>.<name>``: where a command's output about a checkpoint goes."""
    return f"{os.path.splitext(os.path.abspath(str(ckpt_path)))[0]}.{name}"


class ResultsBesideCheckpoint:
    """Mixin of the otcls tasks: where a test run's results go.

    ``otcls test`` sets ``results_beside_checkpoint``; its results then go to ``<checkpoint>.<stem>``
    beside the tested checkpoint (``untrained.<stem>`` in the run folder without one), so testing a
    run's checkpoint again never overwrites the results its fit wrote to ``<run>/<stem>``.
    """

    results_beside_checkpoint = False

    def results_location(self, stem: str) -> Tuple[str, str]:
        """``(folder, file stem)`` of this test's results."""
        trainer = self.trainer
        if not self.results_beside_checkpoint:
            return trainer.default_root_dir, stem
        ckpt = trainer.ckpt_path
        if not ckpt:
            return trainer.default_root_dir, f"untrained.{stem}"
        return os.path.split(checkpoint_sibling(ckpt, stem))


def classes_from_datamodule(module: L.LightningModule, hint: str) -> Tuple[int, Optional[List[int]]]:
    """``(num_classes, class_counts)`` of the trainer's DataModule; ``hint`` says what to do without one."""
    dm = getattr(module.trainer, "datamodule", None) if module._trainer is not None else None
    if dm is None or not getattr(dm, "num_classes", None):
        raise ValueError(f"{type(module).__name__} needs num_classes: {hint}")
    return dm.num_classes, getattr(dm, "class_counts", None)


def gather_with_grad(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Every rank's ``tensors`` concatenated along dim 0 in rank order, differentiable (one process: as is).

    The backward sums each rank's gradient for this rank's slice. A loss computed on the gathered
    batch is then the same on every rank, and DDP's gradient mean gives exactly the gradient of that
    loss over the global batch, as one process would compute it (SimCLR / SupCon practice: contrast
    against every rank's views, not only the local ones). Every rank must pass the same shapes.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    from torch.distributed.nn.functional import all_gather

    out = []
    for t in tensors:
        parts = all_gather(t) if t.is_floating_point() and t.requires_grad else _gather_no_grad(t)
        out.append(torch.cat(parts))
    return tuple(out)


def _gather_no_grad(t: torch.Tensor) -> List[torch.Tensor]:
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return parts


def eval_batch_indices(idx: Optional[torch.Tensor], y: torch.Tensor, parts: List[tuple]) -> torch.Tensor:
    """Sample indices of an evaluation batch with labels ``y``: ``idx`` when the loader carries them (so DDP's
    padded repeats can be dropped), else positions in loader order counted over the batches ``parts`` seen
    so far (one process only)."""
    if idx is not None:
        return idx.view(-1)
    seen = sum(len(part[1]) for part in parts)
    return torch.arange(seen, seen + len(y), device=y.device)


def unique_first(idx: torch.Tensor) -> tuple:
    """Unique values of ``idx`` and the position of the first occurrence of each."""
    uniq, inverse = torch.unique(idx, return_inverse=True)
    first = torch.full((len(uniq),), len(idx), dtype=torch.long, device=idx.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(idx), device=idx.device), reduce="amin")
    return uniq, first


def gather_without_padding(module: L.LightningModule, parts: Iterable[tuple]) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's evaluation batches ``parts`` (``(logits, y, idx)`` each) with every rank's, each sample once
    (a DistributedSampler pads the last batch with repeats, found by their sample index), in index order."""
    logits, y, idx = (torch.cat(t) for t in zip(*parts))
    if module.trainer.world_size > 1:
        logits, y, idx = (module.all_gather(t).flatten(0, 1) for t in (logits, y, idx))
        idx, first = unique_first(idx)
        logits, y = logits[first], y[first]
    order = torch.argsort(idx)
    return logits[order], y[order]


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


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: ``(step+1)/warmup`` during warm-up, then ``½(1 + cos(π·progress))``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def sgd_or_adamw_with_warmup_cosine(params: Iterable[torch.nn.Parameter], hp, total_steps: int) -> dict:
    """``configure_optimizers`` result: SGD (``momentum``, optional ``nesterov``) or AdamW at ``hp.lr``
    with ``hp.weight_decay``, linear warm-up for ``hp.warmup_steps`` then cosine decay per step."""
    if hp.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, nesterov=hp.get("nesterov", False),
                              weight_decay=hp.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, hp.warmup_steps, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
