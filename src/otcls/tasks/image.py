"""``ImageClassifier``: a backbone from ``MODELS`` + a ``TransportHead``, trained and evaluated on long-tailed images.

Training: SGD (or AdamW), linear warm-up for ``warmup_steps`` then cosine decay to 0 at the last step.
Validation (training images held out before the long-tailed subset is drawn) logs ``val/top1`` and the
class-balanced ``val/bal_acc`` used for checkpoint selection. ``init_checkpoint`` starts from another
run's weights (the DB-OT loss is a fine-tuning stage after softmax training in its paper).

One ``test`` run scores, on every test-prior variant of the DataModule (balanced / LT / reverse-LT),
every inference setting (see :func:`inference_settings`) and writes ``test_results.{json,md}`` into the
run directory (``trainer.default_root_dir``), with the EM estimate of each test prior and its L1 error.
``otcls test --ckpt_path X.ckpt`` writes ``X.test_results.{json,md}`` beside the checkpoint instead, so the
fit's own results stay as they are.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from otcls.data.longtail import SHOT_GROUPS, shot_groups
from otcls.inference.priors import em_prior
from otcls.inference.scores import MODES, OT_MODES, PRIOR_MODES, STREAM_MODES, inference_kwargs
from otcls.models import MODELS
from otcls.reporting.tables import write_results_files
from otcls.tasks.common import (ResultsBesideCheckpoint, build_head_from_hparams, classes_from_datamodule,
                                eval_batch_indices, gather_without_padding, check_schedule_options,
                                sgd_or_adamw_with_warmup_cosine)
from otcls.tasks.evaluation import evaluate_predictions

INFERENCE_MODES = MODES  # one list: otcls.inference.scores.MODES
TEST_PRIORS = ("known", "uniform", "estimated")


def inference_settings(modes: Sequence[str], priors: Sequence[str], ot_batch_size: Optional[int],
                       ot_whole_set: bool) -> List[tuple]:
    """``(name, mode, prior, batch_size)`` of every test-time setting.

    ``softmax`` and ``tau_norm`` use no prior; ``class_bias:<prior>``; OT modes per random batch of
    ``ot_batch_size`` (``reot:<prior>``, ``dbot:<prior>``) and over the whole test set
    (``reot_whole:<prior>``, ``dbot_whole:<prior>``); stream modes (``reot_stream:<prior>``,
    ``dbot_stream:<prior>``) serve the batches of ``ot_batch_size`` in turn and have no whole-set setting (their
    limit is ``<mode>_whole``). ``<prior>``: ``known`` (the test set's class distribution, an oracle),
    ``uniform``, ``estimated`` (EM on the unlabelled test logits; online EM on the stream for stream modes).
    """
    out = []
    for mode in modes:
        if mode not in PRIOR_MODES:
            out.append((mode, mode, None, None))
            continue
        for prior in priors:
            if mode not in OT_MODES:
                out.append((f"{mode}:{prior}", mode, prior, None))
                continue
            if ot_batch_size is not None:
                out.append((f"{mode}:{prior}", mode, prior, int(ot_batch_size)))
            if ot_whole_set and mode not in STREAM_MODES:
                out.append((f"{mode}_whole:{prior}", mode, prior, None))
    return out


class ImageClassifier(ResultsBesideCheckpoint, L.LightningModule):
    """Long-tailed image classification with OT losses and OT inference.

    Args:
        backbone: ``MODELS`` name (``resnet32``, ``resnet10``, ``small_cnn``); ``backbone_kwargs`` go to it.
        loss / loss_kwargs / classifier / head_kwargs: passed to ``TransportHead`` (e.g. ``head_kwargs: {scale: 1}``).
        num_classes / class_counts: taken from the DataModule (``num_classes``, ``class_counts``) at
            setup when not given; stored in the checkpoint so ``load_from_checkpoint`` rebuilds the head.
        teacher_checkpoint: an ``ImageClassifier`` checkpoint whose softmax outputs are the per-sample
            prior of the teacher-based RE-OT loss (``loss_kwargs: {prior: teacher}``).
        init_checkpoint: an ``ImageClassifier`` checkpoint whose weights start this fit (fine-tuning);
            its class counts must equal this run's (same data and seed).
        optimizer: ``sgd`` (momentum, nesterov) or ``adamw``; lr / weight_decay; ``warmup_steps`` (optimiser
            steps) or ``warmup_epochs`` (epochs: the same share of training on any number of devices), then
            cosine. ``lr`` is per optimiser step over the global batch (per-device batch × devices); with
            ``lr_reference_batch`` B the lr is scaled by global batch / B (the linear scaling rule).
        inference_modes / inference_kwargs: evaluated at test time through ``head.predict``
            (``inference_kwargs[mode]``, e.g. ``{dbot: {eps: 1, delta: 0.1}}``).
        test_priors: priors given to ``class_bias`` / ``reot`` / ``dbot`` (``known``, ``uniform``, ``estimated``).
        ot_batch_size: OT inference per random test batch of this size (the DB-OT paper's setting);
            ``ot_whole_set`` adds the coupling of the whole test set.
        channels_last: hold the backbone's weights and image inputs in channels-last layout, the layout
            cuDNN's tensor-core kernels (bf16/fp16) and oneDNN's CPU kernels are fastest in (on 1 CPU core,
            1.16× a 3-stage CNN's training step, 9× its max-pooling).
        compile: ``torch.compile`` the backbone (opt-in: the first steps pay the compilation). The compiled
            module is not a submodule, so checkpoints keep the plain backbone's keys.

    Set ``trainer.benchmark: true`` (the CIFAR / ImageNet base configs do) for cuDNN's autotuner.
    """

    checkpoint_monitor = ("val/bal_acc", "max")  # read by otcls.lightning_cli to pick the best checkpoint

    def __init__(self, backbone: str = "resnet32", backbone_kwargs: Optional[Dict[str, Any]] = None,
                 loss: str = "ce", loss_kwargs: Optional[Dict[str, Any]] = None, classifier: str = "linear",
                 head_kwargs: Optional[Dict[str, Any]] = None,
                 num_classes: Optional[int] = None, class_counts: Optional[List[int]] = None,
                 teacher_checkpoint: Optional[str] = None, init_checkpoint: Optional[str] = None,
                 optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 5e-4, warmup_steps: int = 0, warmup_epochs: Optional[float] = None,
                 lr_reference_batch: Optional[int] = None,
                 inference_modes: Sequence[str] = INFERENCE_MODES,
                 inference_kwargs: Optional[Dict[str, Dict[str, Any]]] = None,
                 test_priors: Sequence[str] = TEST_PRIORS, ot_batch_size: Optional[int] = 256,
                 ot_whole_set: bool = True, channels_last: bool = True, compile: bool = False) -> None:
        super().__init__()
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got '{optimizer}'")
        check_schedule_options(lr_reference_batch, warmup_steps, warmup_epochs)
        bad = [p for p in test_priors if p not in TEST_PRIORS]
        if bad:
            raise ValueError(f"unknown test_priors {bad}; choose from {', '.join(TEST_PRIORS)}")
        if ot_batch_size is not None and ot_batch_size < 1:
            raise ValueError(f"ot_batch_size must be >= 1 or null (whole set only); got {ot_batch_size}")
        self.save_hyperparameters()
        self.backbone = MODELS.build(backbone, **(backbone_kwargs or {}))
        self.head: Optional[nn.Module] = None
        if num_classes is not None:
            self._build_head(num_classes, class_counts)
        self.teacher: Optional[ImageClassifier] = None
        self._memory_format = torch.contiguous_format
        # not a submodule (object.__setattr__): state_dict keys stay those of the plain backbone
        object.__setattr__(self, "_run_backbone", torch.compile(self.backbone) if compile else self.backbone)
        self._initialised_from_checkpoint = False
        self._test_outputs: Dict[int, List[tuple]] = {}

    # --- construction ----------------------------------------------------------------------
    def _build_head(self, num_classes: int, class_counts: Optional[List[int]]) -> None:
        self.head = build_head_from_hparams(self, self.backbone.out_features, num_classes, class_counts)

    def setup(self, stage: str) -> None:
        if self.head is None:
            self._build_head(*classes_from_datamodule(
                self, "set model.init_args.num_classes or use a DataModule exposing num_classes and class_counts"))
        if self.hparams.teacher_checkpoint and self.teacher is None and stage == "fit":
            path = self.hparams.teacher_checkpoint
            if not os.path.isfile(path):
                raise ValueError(f"teacher_checkpoint '{path}' not found: train the teacher first (e.g. the CE config)")
            teacher = ImageClassifier.load_from_checkpoint(path, map_location="cpu")
            teacher.eval().requires_grad_(False)
            object.__setattr__(self, "teacher", teacher)  # not a submodule: not saved, not optimised
        if self.hparams.get("init_checkpoint") and stage == "fit" and not self._initialised_from_checkpoint:
            self._load_init_checkpoint(self.hparams.init_checkpoint)
        if not hasattr(self, "val_confusion"):
            self.val_confusion = MulticlassConfusionMatrix(self.head.num_classes)

    def _load_init_checkpoint(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ValueError(f"init_checkpoint '{path}' not found: train the run it comes from first "
                             "(e.g. the CE config of the same seed)")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        theirs = ckpt.get("hyper_parameters", {}).get("class_counts")
        if theirs is not None and self.hparams.class_counts is not None and list(theirs) != list(self.hparams.class_counts):
            raise ValueError(f"init_checkpoint '{path}' was trained on class counts {list(theirs)} but this run has "
                             f"{list(self.hparams.class_counts)}: use the checkpoint of the same data and seed")
        missing, unexpected = self.load_state_dict(ckpt["state_dict"], strict=False)
        if missing or unexpected:
            raise ValueError(f"init_checkpoint '{path}' does not fit this model (missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}): use a checkpoint of the same backbone and classifier")
        self._initialised_from_checkpoint = True

    def _set_memory_format(self) -> None:
        """channels-last weights on CUDA and CPU (called once the model is on its device)."""
        fmt = torch.channels_last if self.hparams.get("channels_last") and self.device.type in ("cuda", "cpu") \
            else torch.contiguous_format
        if fmt != self._memory_format:
            self.backbone.to(memory_format=fmt)
            self._memory_format = fmt

    def on_fit_start(self) -> None:
        self._set_memory_format()

    def on_test_start(self) -> None:
        self._set_memory_format()

    def on_predict_start(self) -> None:
        self._set_memory_format()

    # --- forward ---------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output (the head's input), e.g. for t-SNE."""
        if x.dim() == 4 and self._memory_format == torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._run_backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # --- training --------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.head.set_progress(self.current_epoch, self.trainer.max_epochs)
        lam = getattr(self.head, "lam", None)
        if lam is not None:
            self.log("train/lambda", float(lam), on_step=False, on_epoch=True, sync_dist=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        extra = {}
        if self.teacher is not None:
            self.teacher.to(x.device)
            with torch.no_grad():
                extra["teacher_probs"] = self.teacher(x).softmax(-1)
        loss = self.head.compute_loss(logits, y, **extra)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        self.val_confusion.update(self(x).argmax(-1), y)

    def _shot_groups(self) -> Dict[str, List[int]]:
        """Shot groups of the DataModule (its thresholds), else the default ones of the stored class counts."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "shot_groups") and getattr(dm, "class_counts", None) is not None:
            return dm.shot_groups()
        counts = self.hparams.class_counts
        return shot_groups(counts) if counts is not None else {}

    def on_validation_epoch_end(self) -> None:
        """``val/top1``, ``val/bal_acc`` (the mean recall over the classes validation has: a class without
        validation images is left out, not counted as 0) and ``val/<shot group>``."""
        conf = self.val_confusion.compute().double()
        self.val_confusion.reset()
        support = conf.sum(1)
        if support.sum() == 0:
            return
        recall = conf.diag()[support > 0] / support[support > 0]
        self.log("val/top1", 100.0 * float(conf.diag().sum() / support.sum()), prog_bar=True, sync_dist=True)
        self.log("val/bal_acc", 100.0 * float(recall.mean()), prog_bar=True, sync_dist=True)
        if self.hparams.class_counts is not None:
            for group, classes in self._shot_groups().items():
                idx = torch.as_tensor(classes, dtype=torch.long)
                n = float(support[idx].sum()) if len(idx) else 0.0
                if n > 0:  # an empty group (no few-shot class) is not logged rather than logged as 0
                    self.log(f"val/{group}", 100.0 * float(conf.diag()[idx].sum()) / n, sync_dist=True)

    def configure_optimizers(self):
        return sgd_or_adamw_with_warmup_cosine(self.parameters(), self.hparams,
                                               int(self.trainer.estimated_stepping_batches), self.trainer)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> Dict[str, torch.Tensor]:
        """Logits, softmax prediction and (when the batch has them) targets and sample indices of one batch."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = self(x)
        out = {"logits": logits, "pred": logits.argmax(-1)}
        if isinstance(batch, (tuple, list)) and len(batch) > 1:
            out["target"] = batch[1]
        if isinstance(batch, (tuple, list)) and len(batch) > 2:
            out["index"] = batch[2]
        return out

    # --- test: every inference mode × every test-prior variant ------------------------------
    def on_test_epoch_start(self) -> None:
        self._test_outputs = {}

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch[0], batch[1]
        parts = self._test_outputs.setdefault(dataloader_idx, [])
        parts.append((self(x).detach(), y, eval_batch_indices(batch[2] if len(batch) > 2 else None, y, parts)))

    def _test_priors(self, logits: torch.Tensor, known: Optional[torch.Tensor]) -> Dict[str, Any]:
        """The priors given to OT inference: known (if the DataModule has it), uniform, EM-estimated."""
        priors: Dict[str, Any] = {"uniform": "uniform"}
        if known is not None:
            priors["known"] = known
        if "estimated" in self.hparams.get("test_priors", TEST_PRIORS):
            source = self.head.calibrated_prior().to(logits.device)
            probs = self.head.calibrated_logits(logits.double()).softmax(-1)
            priors["estimated"] = em_prior(probs, source).to(logits)
        return priors

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        variants = list(getattr(dm, "test_variants", ["all"]))  # one test set without variants: test/all/<setting>/…
        counts = self.hparams.class_counts
        groups = self._shot_groups()
        n = self.hparams.num_classes
        settings = inference_settings(self.hparams.inference_modes, self.hparams.get("test_priors", TEST_PRIORS),
                                      self.hparams.get("ot_batch_size", 256), self.hparams.get("ot_whole_set", True))
        results: Dict[str, Dict[str, Any]] = {}
        for k, variant in enumerate(variants):
            if k not in self._test_outputs:
                continue
            logits, y = gather_without_padding(self, self._test_outputs[k])
            known = dm.test_prior(variant).to(logits.device) if hasattr(dm, "test_prior") else None
            priors = self._test_priors(logits, known)
            results[variant] = {}
            for name, mode, prior, batch_size in settings:
                if prior is not None and prior not in priors:
                    continue
                kwargs = dict(inference_kwargs(self.hparams.inference_kwargs, mode))
                if mode in OT_MODES:
                    kwargs.update(batch_size=batch_size, seed=0)  # same batches for every model: paired comparisons
                # a stream estimates its prior online: it never holds the set the whole-set EM estimate needs
                spec = "estimated" if mode in STREAM_MODES and prior == "estimated" else priors.get(prior, "uniform")
                preds = self.head.predict(logits, mode=mode, test_prior=spec, **kwargs)
                res = evaluate_predictions(preds, y, n, groups)
                results[variant][name] = res
                for key in ("top1", *SHOT_GROUPS):
                    if key in res and not math.isnan(res[key]):
                        self.log(f"test/{variant}/{name}/{key}", res[key], sync_dist=True, add_dataloader_idx=False)
            if "estimated" in priors and known is not None:
                l1 = float((priors["estimated"].double() - known.double()).abs().sum())
                results[variant]["em_prior"] = {"l1": l1, "estimated": priors["estimated"].double().tolist(),
                                                "known": known.double().tolist()}
                self.log(f"test/{variant}/em_prior/l1", l1, sync_dist=True, add_dataloader_idx=False)
        self._test_outputs = {}
        if self.trainer.is_global_zero:
            write_test_results(*self.results_location("test_results"), results, counts, self.hparams)
            log_wandb_tables(self.trainer.loggers, results, counts)


WANDB_TABLE_SETTINGS = ("softmax", "dbot:known", "dbot:estimated")


def log_wandb_tables(loggers, results: Dict[str, Dict[str, Any]], class_counts: Optional[List[int]]) -> None:
    """Per-class accuracy (softmax, DB-OT known / estimated prior) and the softmax confusion matrix of every
    test set, as W&B tables, to each ``WandbLogger`` among ``loggers``."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in (lg for lg in loggers if isinstance(lg, WandbLogger)):
        for variant, settings in results.items():
            shown = [name for name in WANDB_TABLE_SETTINGS if name in settings]
            if not shown:
                continue
            n = len(settings[shown[0]]["per_class"])
            rows = [[c, None if class_counts is None else int(class_counts[c]),
                     *[settings[name]["per_class"][c] for name in shown]] for c in range(n)]
            lg.log_table(key=f"test/{variant}/per_class", columns=["class", "train_images", *shown], data=rows)
            if "softmax" in settings:
                conf = settings["softmax"]["confusion"]
                lg.log_table(key=f"test/{variant}/softmax_confusion", columns=["true", *[str(c) for c in range(n)]],
                             data=[[t, *row] for t, row in enumerate(conf)])


def write_test_results(run_dir: str, stem: str, results: Dict[str, Dict[str, Any]],
                       class_counts: Optional[List[int]], hparams: Any) -> None:
    """``<stem>.json`` (everything, incl. per-class accuracy and confusion matrices) and ``<stem>.md`` in ``run_dir``."""
    payload = {"loss": hparams.loss, "loss_kwargs": hparams.loss_kwargs, "classifier": hparams.classifier,
               "head_kwargs": hparams.head_kwargs, "backbone": hparams.backbone,
               "class_counts": class_counts, "init_checkpoint": hparams.get("init_checkpoint"),
               "inference": {"ot_batch_size": hparams.get("ot_batch_size"), "ot_whole_set": hparams.get("ot_whole_set"),
                             "test_priors": list(hparams.get("test_priors", TEST_PRIORS)),
                             "inference_kwargs": hparams.get("inference_kwargs")}}
    table = write_results_files(run_dir, payload, results, f"Test results — loss `{hparams.loss}`", stem=stem)
    print(f"\nloss={hparams.loss}\n{table}")
