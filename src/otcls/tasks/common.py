"""Pieces the LightningModules in otcls share: the head built from hyperparameters, the optimiser."""
from __future__ import annotations

import math
import os
import sys
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


def global_batch_size(trainer) -> Optional[int]:
    """Samples per optimiser step over every device: the DataModule's ``batch_size`` (per device) × devices ×
    nodes × gradient accumulation; None when the DataModule has no ``batch_size``."""
    per_device = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
    if not isinstance(per_device, int):
        return None
    return per_device * trainer.world_size * trainer.accumulate_grad_batches


def effective_schedule(hp, trainer, total_steps: int) -> Tuple[float, int]:
    """``(lr, warm-up steps)`` of this run. ``hp.lr_reference_batch`` (opt-in linear scaling, Goyal et al.
    2017): lr × global batch / reference batch. ``hp.warmup_epochs`` (when set, instead of ``warmup_steps``):
    that many epochs of this run's steps, so the warm-up keeps its share of training on any number of devices;
    ``warmup_steps`` counts optimiser steps, which shrink with more devices."""
    lr = float(hp.lr)
    reference = hp.get("lr_reference_batch")
    if reference is not None:
        batch = global_batch_size(trainer)
        if batch is None:
            raise ValueError("lr_reference_batch needs a DataModule with a batch_size (per device)")
        lr *= batch / reference
    warmup_epochs = hp.get("warmup_epochs")
    if warmup_epochs is not None:
        per_epoch = total_steps / max(1, trainer.max_epochs or 1)
        return lr, int(round(warmup_epochs * per_epoch))
    return lr, int(hp.warmup_steps)


def check_schedule_options(lr_reference_batch, warmup_steps, warmup_epochs) -> None:
    if lr_reference_batch is not None and not (isinstance(lr_reference_batch, int) and lr_reference_batch >= 1):
        raise ValueError(f"lr_reference_batch must be an integer >= 1 (the global batch the lr was tuned for) or "
                         f"null; got {lr_reference_batch!r}")
    if warmup_epochs is not None:
        if not warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be >= 0 or null; got {warmup_epochs}")
        if warmup_steps:
            raise ValueError(f"give the warm-up once: warmup_steps ({warmup_steps}) or warmup_epochs "
                             f"({warmup_epochs}); set the other to 0 / null")


def report_schedule(trainer, lr: float, warmup: int, total_steps: int) -> None:
    """Say once (rank 0, stderr and every logger's hyperparameters) what the optimiser really runs with:
    the global batch over every device, the lr and the warm-up's share of training."""
    batch = global_batch_size(trainer)
    record = {"optim/global_batch_size": batch, "optim/lr": lr, "optim/warmup_steps": warmup,
              "optim/total_steps": total_steps, "optim/devices": trainer.world_size}
    for logger in trainer.loggers:
        logger.log_hyperparams(record)
    if trainer.is_global_zero:
        per_device = getattr(trainer.datamodule, "batch_size", None)
        share = f" = {100.0 * warmup / max(1, total_steps):.1f} % of {total_steps} steps" if warmup else ""
        where = (f"{per_device} per device × {trainer.world_size} device(s) × {trainer.accumulate_grad_batches} "
                 "accumulation" if batch is not None else "batch size unknown")
        print(f"otcls: global batch {batch} ({where}); lr {lr:g}; warm-up {warmup} steps{share}", file=sys.stderr)


def sgd_or_adamw_with_warmup_cosine(params: Iterable[torch.nn.Parameter], hp, total_steps: int,
                                    trainer=None) -> dict:
    """``configure_optimizers`` result: SGD (``momentum``, optional ``nesterov``) or AdamW at the run's lr
    with ``hp.weight_decay``, linear warm-up then cosine decay per step (:func:`effective_schedule` with
    ``trainer``; ``hp.lr`` and ``hp.warmup_steps`` as given without one)."""
    lr, warmup = effective_schedule(hp, trainer, total_steps) if trainer is not None else (hp.lr, hp.warmup_steps)
    if trainer is not None:
        report_schedule(trainer, lr, warmup, total_steps)
    if hp.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=hp.momentum, nesterov=hp.get("nesterov", False),
                              weight_decay=hp.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=hp.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
