"""``SegmentationTask``: long-tailed instance segmentation (LVIS) with a TransportHead box classifier.

The model is :func:`otcls.models.mask_rcnn.build_mask_rcnn` (torchvision Mask R-CNN; the RoI
box-classification loss is the head's loss over ``K`` categories + background). Training
minimises the sum of torchvision's RPN, box-regression and mask losses and the head's
classification loss. Validation/test run the detector, convert detections to LVIS results and
score them with ``lvis.LVISEval`` (``segm`` and ``bbox``: AP, AP50, AP75, APr, APc, APf),
logged as ``val/segm/AP`` etc.; the test metrics are also written to ``<run dir>/test_results.json``
(test after fit) or ``<checkpoint>.test_results.json`` beside the checkpoint ``otcls test`` tested.

Box scores come from the head's inference modes (:mod:`otcls.models.box_inference`): the first of
``inference`` is the model's own (validation, ``test/segm/AP``); every setting is scored at test
(``test/<setting>/segm/AP``), from one backbone/RPN pass. Under DDP each rank's detections are
gathered per image id, so an image the distributed sampler repeats to pad the last batch counts once.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import lightning as L
import torch
import torch.distributed as dist

from otcls.models.box_inference import detect, parse_setting
from otcls.models.mask_rcnn import BACKBONES, build_mask_rcnn
from otcls.tasks.common import ResultsBesideCheckpoint, sgd_or_adamw_with_warmup_cosine
from otcls.tasks.lvis_eval import IOU_TYPES, detections_to_lvis, evaluate_lvis, merge_rank_detections


class SegmentationTask(ResultsBesideCheckpoint, L.LightningModule):
    """Mask R-CNN + TransportHead on an LVIS-format DataModule (:class:`otcls.data.lvis.LVISDataModule`).

    Args:
        loss / loss_kwargs / classifier / scale: the box head (``TransportHead``) over ``K+1`` classes.
        num_classes / class_counts: foreground categories and their counts; taken from the DataModule
            at setup when not given (and stored in the checkpoint). ``background_count`` overrides the
            background count (default ``(1-p)/p·Σn``, see :mod:`otcls.models.mask_rcnn`).
        backbone: ``resnet50_fpn`` (real runs) or ``resnet18_c3`` (light, CPU); ``pretrained_backbone``
            loads ImageNet weights for ResNet-50.
        min_size / max_size / box_batch_size_per_image / detections_per_img / box_score_thresh:
            torchvision Mask R-CNN settings.
        optimizer / lr / momentum / weight_decay / warmup_steps: SGD or AdamW, linear warm-up then cosine.
        iou_types: LVISEval types to score.
        inference: box-scoring settings (``softmax``, ``class_bias:uniform``, ``dbot:train``, ...; see
            :mod:`otcls.models.box_inference`); the first is the default. OT settings couple the RoIs of
            one evaluation batch, so they depend on ``eval_batch_size``.
        inference_kwargs: ``eps`` / ``delta`` / ``tau`` of those settings.
    """

    # LVIS evaluation is costly, so recipes evaluate once after fit: checkpoints keep the latest weights.
    checkpoint_monitor = None

    def __init__(self, loss: str = "ce", loss_kwargs: Optional[Dict[str, Any]] = None, classifier: str = "linear",
                 scale: float = 16.0, num_classes: Optional[int] = None, class_counts: Optional[List[float]] = None,
                 background_count: Optional[float] = None, backbone: str = "resnet50_fpn",
                 pretrained_backbone: bool = False, min_size: int = 800, max_size: int = 1333,
                 box_batch_size_per_image: int = 512, detections_per_img: int = 300,
                 box_score_thresh: float = 0.0001, optimizer: str = "sgd", lr: float = 0.02, momentum: float = 0.9,
                 weight_decay: float = 1e-4, warmup_steps: int = 500,
                 iou_types: Sequence[str] = IOU_TYPES, inference: Sequence[str] = ("softmax",),
                 inference_kwargs: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got '{optimizer}'")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; choose one of: {', '.join(BACKBONES)}")
        bad = [t for t in iou_types if t not in IOU_TYPES]
        if bad or not iou_types:
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {list(iou_types)}")
        if isinstance(inference, str) or not inference:
            raise ValueError(f"inference must be a non-empty list of settings, e.g. ['softmax', 'dbot:train']; "
                             f"got {inference!r}")
        for setting in inference:
            parse_setting(setting)
        self.save_hyperparameters()
        self.model: Optional[torch.nn.Module] = None
        if num_classes is not None:
            self._build(num_classes, class_counts)
        self._records: Dict[str, Dict[int, List[Dict]]] = {}

    # --- construction ----------------------------------------------------------------------
    def _build(self, num_classes: int, class_counts: Optional[Sequence[float]]) -> None:
        hp = self.hparams
        self.hparams.update(num_classes=int(num_classes),
                            class_counts=None if class_counts is None else [float(c) for c in class_counts])
        self.model = build_mask_rcnn(
            int(num_classes), loss=hp.loss, loss_kwargs=hp.loss_kwargs, class_counts=hp.class_counts,
            background_count=hp.background_count, classifier=hp.classifier, scale=hp.scale, backbone=hp.backbone,
            pretrained_backbone=hp.pretrained_backbone, min_size=hp.min_size, max_size=hp.max_size,
            box_batch_size_per_image=hp.box_batch_size_per_image, detections_per_img=hp.detections_per_img,
            box_score_thresh=hp.box_score_thresh, inference=hp.inference[0], inference_kwargs=hp.inference_kwargs)

    def setup(self, stage: str) -> None:
        if self.model is not None:
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not getattr(dm, "num_classes", None):
            raise ValueError("SegmentationTask needs num_classes: set model.init_args.num_classes or use a "
                             "DataModule exposing num_classes and class_counts (otcls.data.lvis.LVISDataModule)")
        self._build(dm.num_classes, getattr(dm, "class_counts", None))

    @property
    def head(self):
        """The box classifier's TransportHead (``lam``, ``set_progress``, ``compute_loss``)."""
        return None if self.model is None else self.model.roi_heads.box_predictor.head

    def forward(self, images: List[torch.Tensor], targets: Optional[List[Dict]] = None):
        return self.model(images, targets)

    # --- training --------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.head.set_progress(self.current_epoch, self.trainer.max_epochs)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        n = len(images)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return sgd_or_adamw_with_warmup_cosine(params, self.hparams, int(self.trainer.estimated_stepping_batches))

    # --- evaluation ------------------------------------------------------------------------
    def _lvis_datamodule(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "category_ids") or not hasattr(dm, "val_lvis"):
            raise ValueError("SegmentationTask evaluates with LVISEval and needs an LVIS DataModule "
                             "(otcls.data.lvis.LVISDataModule) passed as datamodule=")
        return dm

    def _eval_step(self, batch, settings: Sequence[str]) -> None:
        images, targets = batch
        category_ids = self._lvis_datamodule().category_ids
        ids = [int(t["image_id"]) for t in targets]
        for setting, outputs in detect(self.model, images, settings).items():
            per_image = self._records.setdefault(setting, {})
            for img_id, out in zip(ids, outputs):
                per_image[img_id] = detections_to_lvis([out], [img_id], category_ids)

    def _gather_records(self) -> Dict[str, Dict[int, List[Dict]]]:
        """Every rank's detections, one entry per (setting, image id): a sampler-padded image counts once."""
        records, self._records = self._records, {}
        if self.trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: List[Any] = [None] * self.trainer.world_size
            dist.all_gather_object(gathered, records)
            records = merge_rank_detections(gathered)
        return records

    def _eval_end(self, prefix: str, settings: Sequence[str]) -> Dict[str, Dict[str, float]]:
        records = self._gather_records()
        dm = self._lvis_datamodule()
        dm.setup()
        results = {}
        for k, setting in enumerate(settings):
            per_image = records.get(setting, {})
            flat = [r for img_id in sorted(per_image) for r in per_image[img_id]]
            results[setting] = evaluate_lvis(dm.val_lvis, flat, sorted(per_image), iou_types=self.hparams.iou_types)
            tag = prefix if k == 0 else f"{prefix}/{setting}"
            self.log_dict({f"{tag}/{m}": v for m, v in results[setting].items()}, sync_dist=True)
        return results

    def on_validation_epoch_start(self) -> None:
        self._records = {}

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.hparams.inference[:1])

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._eval_end("val", self.hparams.inference[:1])
        else:
            self._records = {}

    def on_test_epoch_start(self) -> None:
        self._records = {}

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.hparams.inference)

    def on_test_epoch_end(self) -> None:
        settings = list(self.hparams.inference)
        results = self._eval_end("test", settings)
        if self.trainer.is_global_zero:
            root, stem = self.results_location("test_results")
            os.makedirs(root, exist_ok=True)
            with open(os.path.join(root, f"{stem}.json"), "w") as f:
                json.dump({"loss": self.hparams.loss, "loss_kwargs": self.hparams.loss_kwargs,
                           "inference": settings[0], "metrics": results[settings[0]],
                           "by_inference": results}, f, indent=2)
