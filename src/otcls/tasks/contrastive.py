"""``ContrastiveTask``: long-tailed contrastive representation learning, evaluated by a linear probe.

Training: each batch ``x`` is turned into two random views (:class:`TwoViewAugment`), encoded by
a ``MODELS`` backbone and an MLP projector, and scored by a contrastive loss from ``LOSSES``
(``nt_xent``, ``supcon`` or ``reot_contrastive``). ``self.head`` *is* that loss, so the λ(t)
callback (``PriorSchedule``, which sets ``pl_module.head.lam``) drives the RE-OT prior mix.

Test: a linear probe (:class:`otcls.heads.TransportHead` on standardised frozen backbone
features) is fitted on the training set, then every inference mode in ``inference_modes``
(softmax, or OT inference ``reot``/``dbot`` on the probe's logits) is scored on every test-prior
variant (top-1 and many/medium/few), logged and written to ``test_results.{json,md}``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import lightning as L
import torch
from torch import nn

from otcls.data.longtail import SHOT_GROUPS, shot_groups
from otcls.losses import build_loss
from otcls.models import MODELS
from otcls.reporting.tables import write_results_files
from otcls.tasks.contrastive_augment import TwoViewAugment
from otcls.tasks.evaluation import evaluate_predictions
from otcls.tasks.common import (ResultsBesideCheckpoint, eval_batch_indices, gather_with_grad, gather_without_padding,
                                sgd_or_adamw_with_warmup_cosine)
from otcls.tasks.linear_probe import Standardizer, extract_features, fit_probe

CONTRASTIVE_LOSSES = ("nt_xent", "supcon", "reot_contrastive")


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """SimCLR projector ``g(h) = W2 · ReLU(BN(W1 h))``."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, out_dim))


class ContrastiveTask(ResultsBesideCheckpoint, L.LightningModule):
    """Contrastive pre-training of a backbone + linear-probe evaluation.

    Args:
        backbone / backbone_kwargs: ``MODELS`` name (``small_cnn``, ``resnet32``, ...) and options.
        loss / loss_kwargs: one of ``nt_xent``, ``supcon``, ``reot_contrastive`` and its options
            (``temperature``, ``prior``, ``target``, ``coupling``, ...).
        proj_dim / proj_hidden: projector output and hidden width (hidden default: backbone width).
        views: options of :class:`TwoViewAugment` (crop scale, flip, jitter, greyscale).
        num_classes / class_counts: from the DataModule at setup when not given.
        optimizer: ``sgd`` or ``adamw``; lr / momentum / weight_decay; ``warmup_steps`` then cosine.
        probe_epochs / probe_lr / probe_weight_decay / probe_batch_size: linear-probe training.
        probe_loss / probe_loss_kwargs: the probe's loss (any classification loss, default ``ce``).
        inference_modes / inference_kwargs: scored at test time through ``probe.predict``.
    """

    def __init__(self, backbone: str = "small_cnn", backbone_kwargs: Optional[Dict[str, Any]] = None,
                 loss: str = "reot_contrastive", loss_kwargs: Optional[Dict[str, Any]] = None,
                 proj_dim: int = 64, proj_hidden: Optional[int] = None,
                 views: Optional[Dict[str, Any]] = None,
                 num_classes: Optional[int] = None, class_counts: Optional[List[int]] = None,
                 optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
                 warmup_steps: int = 0, probe_epochs: int = 30, probe_lr: float = 1e-2,
                 probe_weight_decay: float = 1e-4, probe_batch_size: int = 512,
                 probe_loss: str = "ce", probe_loss_kwargs: Optional[Dict[str, Any]] = None,
                 inference_modes: Sequence[str] = ("softmax", "reot"),
                 inference_kwargs: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        super().__init__()
        if loss not in CONTRASTIVE_LOSSES:
            raise ValueError(f"ContrastiveTask loss must be one of {CONTRASTIVE_LOSSES}, got '{loss}'")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got '{optimizer}'")
        if proj_dim < 1:
            raise ValueError(f"proj_dim must be >= 1, got {proj_dim}")
        self.save_hyperparameters()
        self.backbone = MODELS.build(backbone, **(backbone_kwargs or {}))
        width = self.backbone.out_features
        self.projector = projection_mlp(width, proj_hidden or width, proj_dim)
        self.views = TwoViewAugment(**(views or {}))
        self.head: Optional[nn.Module] = None  # the contrastive loss (has ``lam``)
        self.probe: Optional[nn.Module] = None
        self.standardize = Standardizer(width)
        if num_classes is not None:
            self._build(num_classes, class_counts)
        self._test_outputs: Dict[int, List[tuple]] = {}

    # --- construction ----------------------------------------------------------------------
    def _build(self, num_classes: int, class_counts: Optional[List[int]]) -> None:
        from otcls.heads import TransportHead

        if class_counts is not None and len(class_counts) != num_classes:
            raise ValueError(f"class_counts has {len(class_counts)} entries but num_classes={num_classes}")
        hp = self.hparams
        hp.update(num_classes=int(num_classes),
                  class_counts=None if class_counts is None else [int(c) for c in class_counts])
        kwargs = dict(hp.loss_kwargs or {})
        # Training counts go to the loss only when asked for (frequency prior from training counts).
        self.head = build_loss(hp.loss, num_classes=int(num_classes), class_counts=kwargs.pop("class_counts", None),
                               **kwargs)
        self.probe = TransportHead(self.backbone.out_features, num_classes, loss=hp.probe_loss,
                                   loss_kwargs=hp.probe_loss_kwargs, class_counts=class_counts)

    def setup(self, stage: str) -> None:
        if self.head is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            if dm is None or not getattr(dm, "num_classes", None):
                raise ValueError("ContrastiveTask needs num_classes: set model.init_args.num_classes or use a "
                                 "DataModule exposing num_classes and class_counts")
            self._build(dm.num_classes, dm.class_counts)

    # --- forward ---------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (what the probe and the t-SNE plot see)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Linear-probe logits of ``x`` (the probe is fitted at test time, see :meth:`fit_linear_probe`)."""
        if self.probe is None:
            raise ValueError("the linear probe is not built yet: pass num_classes, or run trainer.fit/test with a "
                             "DataModule first")
        return self.probe(self.standardize(self.backbone(x)))

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The contrastive loss over the views of every rank's batch (gathered with gradient)."""
        v1, v2 = self.views(x)
        z = self.projector(self.backbone(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        return self.head(*gather_with_grad(z1, z2, y))

    # --- training --------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.log("train/lambda", float(self.head.lam), on_step=False, on_epoch=True, sync_dist=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = self._loss(x, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        if len(y) < 2:
            return
        self.log("val/loss", self._loss(x, y), prog_bar=True, batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        params = list(self.backbone.parameters()) + list(self.projector.parameters())
        return sgd_or_adamw_with_warmup_cosine(params, self.hparams, int(self.trainer.estimated_stepping_batches))

    # --- linear probe ----------------------------------------------------------------------
    def fit_linear_probe(self, loader: Any, max_batches: Optional[int] = None) -> List[float]:
        """Fit the standardiser and the probe on frozen features of ``loader``; returns per-epoch losses.

        Runs outside ``inference_mode`` (Lightning tests under it) so the probe can be trained there.
        """
        hp = self.hparams
        was_training = self.training
        progress = self._trainer is not None and self.trainer.progress_bar_callback is not None
        with torch.inference_mode(False):
            self.eval()
            h, y = extract_features(self.backbone, loader, self.device, max_batches)
            self.train(was_training)
            h = self.standardize.fit(h.to(self.device))(h.to(self.device))
            self.probe.train()
            history = fit_probe(self.probe, h, y.to(self.device), epochs=hp.probe_epochs, lr=hp.probe_lr,
                                weight_decay=hp.probe_weight_decay, batch_size=hp.probe_batch_size,
                                seed=torch.initial_seed() % (2 ** 31), progress=progress)
            self.probe.eval()
        return history

    # --- test: probe × inference mode × test-prior variant ----------------------------------
    def on_test_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None:
            raise ValueError("ContrastiveTask.test needs a DataModule with a train_dataloader to fit the linear probe")
        history = self.fit_linear_probe(dm.train_dataloader(), max_batches=1 if self.trainer.fast_dev_run else None)
        self.log("test/probe_train_loss", history[-1], sync_dist=True)
        self._test_outputs = {}

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch[0], batch[1]
        parts = self._test_outputs.setdefault(dataloader_idx, [])
        parts.append((self(x).detach(), y, eval_batch_indices(batch[2] if len(batch) > 2 else None, y, parts)))

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        variants = list(getattr(dm, "test_variants", ["test"]))
        hp = self.hparams
        groups = shot_groups(hp.class_counts) if hp.class_counts is not None else {}
        results: Dict[str, Dict[str, Any]] = {}
        for k, variant in enumerate(variants):
            if k not in self._test_outputs:
                continue
            logits, y = gather_without_padding(self, self._test_outputs[k])
            prior = dm.test_prior(variant).to(logits.device) if hasattr(dm, "test_prior") else "uniform"
            results[variant] = {}
            for mode in hp.inference_modes:
                kwargs = dict((hp.inference_kwargs or {}).get(mode, {}))
                preds = self.probe.predict(logits, mode=mode, test_prior=prior, **kwargs)
                res = evaluate_predictions(preds, y, hp.num_classes, groups)
                results[variant][mode] = res
                for key in ("top1", *SHOT_GROUPS):
                    if key in res and not math.isnan(res[key]):
                        self.log(f"test/{variant}/{mode}/{key}", res[key], sync_dist=True,
                                 add_dataloader_idx=False)
        self._test_outputs = {}
        if self.trainer.is_global_zero:
            write_probe_results(*self.results_location("test_results"), results, hp)


def write_probe_results(run_dir: str, stem: str, results: Dict[str, Dict[str, Any]], hparams: Any) -> None:
    """``<stem>.json`` (incl. per-class accuracy) and ``<stem>.md`` of the linear probe in ``run_dir``."""
    payload = {"task": "contrastive", "loss": hparams.loss, "loss_kwargs": hparams.loss_kwargs,
               "backbone": hparams.backbone, "class_counts": hparams.class_counts}
    write_results_files(run_dir, payload, results, f"Linear probe — contrastive loss `{hparams.loss}`",
                       mode_header="probe inference", stem=stem)
