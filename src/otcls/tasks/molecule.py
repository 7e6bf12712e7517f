"""``MoleculeClassifier``: a GIN/GCN encoder (:mod:`otcls.models.gnn`) + a ``TransportHead`` on OGB molecule sets.

Training: Adam (OGB examples: lr 1e-3, batch 32, 100 epochs). Each validation epoch logs
``val/rocauc`` (the DataModule's ``evaluate``: OGB's Evaluator for OGB's sets), used to pick
the best checkpoint; ``otcls fit --test_after_fit true`` then tests that checkpoint. The ROC-AUC
score is the positive-class column of ``head.predict_scores`` (binary sets) or the full score
matrix (multi-class, one-vs-rest). Test after fit writes ``mol_test_results.{json,md}`` into the run
directory; ``otcls test --ckpt_path X.ckpt`` writes ``X.mol_test_results.{json,md}`` beside the checkpoint.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics.functional.classification import multiclass_accuracy

from otcls.models.gnn import MoleculeGNN
from otcls.reporting.tables import markdown_table
from otcls.tasks.common import (ResultsBesideCheckpoint, build_head_from_hparams, classes_from_datamodule,
                                eval_batch_indices, gather_without_padding)

TEST_PRIORS = ("known", "estimated", "train", "uniform")


class MoleculeClassifier(ResultsBesideCheckpoint, L.LightningModule):
    """Long-tailed molecule classification with OT losses.

    Args:
        conv / num_layers / hidden / dropout / virtual_node / residual / pooling: the encoder
            (:class:`otcls.models.gnn.MoleculeGNN`; OGB defaults gin, 5, 300, 0.5, mean pooling).
        loss / loss_kwargs / classifier / head_kwargs: passed to ``TransportHead``.
        num_classes / class_counts: from the DataModule at setup when not given; kept in the checkpoint.
        lr / weight_decay: Adam.
        inference_modes / inference_kwargs: ``head.predict_scores`` modes scored at test time; the
            first one is also the validation score. OT modes use the training class ratio as ``b``
            unless ``inference_kwargs[mode]["test_prior"]`` says otherwise.
        test_priors: at test time, every OT / class-bias mode in ``inference_modes`` is also scored
            as ``<mode>:<prior>`` with each of these priors: ``known`` (the test split's class
            distribution, an oracle), ``estimated`` (EM on the unlabelled test scores), ``train``,
            ``uniform``. The test set is coupled as one whole set.
    """

    checkpoint_monitor = ("val/rocauc", "max")  # read by otcls.lightning_cli to pick the best checkpoint

    def __init__(self, conv: str = "gin", num_layers: int = 5, hidden: int = 300, dropout: float = 0.5,
                 virtual_node: bool = False, residual: bool = False, pooling: str = "mean",
                 loss: str = "ce", loss_kwargs: Optional[Dict[str, Any]] = None, classifier: str = "linear",
                 head_kwargs: Optional[Dict[str, Any]] = None,
                 num_classes: Optional[int] = None, class_counts: Optional[List[int]] = None,
                 lr: float = 1e-3, weight_decay: float = 0.0,
                 inference_modes: Sequence[str] = ("softmax",),
                 inference_kwargs: Optional[Dict[str, Dict[str, Any]]] = None,
                 test_priors: Sequence[str] = ()) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not inference_modes:
            raise ValueError("inference_modes must name at least one mode, e.g. ['softmax']")
        bad = [p for p in test_priors if p not in TEST_PRIORS]
        if bad:
            raise ValueError(f"unknown test_priors {bad}; choose from {', '.join(TEST_PRIORS)}")
        self.save_hyperparameters()
        self.backbone = MoleculeGNN(conv, num_layers, hidden, dropout, virtual_node, residual, pooling)
        self.head = None
        if num_classes is not None:
            self._build_head(num_classes, class_counts)
        self._outputs: Dict[str, List[tuple]] = {}

    # --- construction ----------------------------------------------------------------------
    def _build_head(self, num_classes: int, class_counts: Optional[List[int]]) -> None:
        from otcls.inference.scores import MODES

        bad = [m for m in self.hparams.inference_modes if m not in MODES]
        if bad:
            raise ValueError(f"unknown inference modes {bad}; choose from {', '.join(MODES)}")
        self.head = build_head_from_hparams(self, self.backbone.out_features, num_classes, class_counts)

    def setup(self, stage: str) -> None:
        if self.head is None:
            self._build_head(*classes_from_datamodule(
                self, "set model.init_args.num_classes or use otcls.data.molecules.MoleculeDataModule"))

    # --- forward ---------------------------------------------------------------------------
    def forward(self, batch) -> torch.Tensor:
        """Logits (graphs, classes) of a PyG batch."""
        return self.head(self.backbone(batch))

    @staticmethod
    def targets(batch) -> torch.Tensor:
        """OGB stores one label per graph as ``y`` (graphs, 1)."""
        return batch.y.view(-1).long()

    def scores(self, logits: torch.Tensor, mode: Optional[str] = None) -> torch.Tensor:
        """(n, C) class scores of ``head.predict_scores`` (rows sum to 1)."""
        mode = mode or self.hparams.inference_modes[0]
        kwargs = dict((self.hparams.inference_kwargs or {}).get(mode, {}))
        if mode in ("reot", "dbot", "class_bias"):
            kwargs.setdefault("test_prior", "train")
        return self.head.predict_scores(logits.float(), mode=mode, **kwargs)

    # --- training --------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.head.set_progress(self.current_epoch, self.trainer.max_epochs)
        if hasattr(self.head.loss, "lam"):
            self.log("train/lambda", float(self.head.lam), on_step=False, on_epoch=True, sync_dist=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        y = self.targets(batch)
        loss = self.head.compute_loss(self(batch), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # --- evaluation ------------------------------------------------------------------------
    def _collect(self, stage: str, batch) -> None:
        y = self.targets(batch)
        parts = self._outputs.setdefault(stage, [])
        parts.append((self(batch).detach(), y, eval_batch_indices(getattr(batch, "sample_idx", None), y, parts)))

    def _gathered(self, stage: str) -> tuple:
        """Every rank's graphs once each: the test-set coupling and ROC-AUC need all of them, and a
        DistributedSampler pads the last batch with repeats that would be scored twice."""
        return gather_without_padding(self, self._outputs.pop(stage))

    def _rocauc(self, y: torch.Tensor, probs: torch.Tensor) -> float:
        if torch.unique(y).numel() < 2:
            rank_zero_warn(f"only class {int(y[0])} present among {len(y)} graphs: ROC-AUC undefined, logged as NaN")
            return math.nan
        evaluate = getattr(getattr(self.trainer, "datamodule", None), "evaluate", None)
        if evaluate is None:
            raise ValueError("MoleculeClassifier scores with the DataModule's evaluate(); use MoleculeDataModule")
        return evaluate(y, probs)

    def _metrics(self, logits: torch.Tensor, y: torch.Tensor, mode: str,
                 test_prior: Optional[Any] = None) -> Dict[str, float]:
        if test_prior is None:
            probs = self.scores(logits, mode)
        else:
            kwargs = dict((self.hparams.inference_kwargs or {}).get(mode, {}), test_prior=test_prior)
            probs = self.head.predict_scores(logits.float(), mode=mode, **kwargs)
        preds, n = probs.argmax(-1), self.hparams.num_classes
        return {"rocauc": self._rocauc(y, probs),
                "acc": float(multiclass_accuracy(preds, y, n, average="micro")),
                "bal_acc": float(multiclass_accuracy(preds, y, n, average="macro")), "n": int(len(y))}

    def validation_step(self, batch, batch_idx: int) -> None:
        self._collect("val", batch)

    def on_validation_epoch_end(self) -> None:
        if "val" not in self._outputs:
            return
        res = self._metrics(*self._gathered("val"), self.hparams.inference_modes[0])
        for key in ("rocauc", "acc", "bal_acc"):
            self.log(f"val/{key}", res[key], prog_bar=key == "rocauc", sync_dist=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._collect("test", batch)

    def on_test_epoch_end(self) -> None:
        if "test" not in self._outputs:
            return
        logits, y = self._gathered("test")
        results = {mode: self._metrics(logits, y, mode) for mode in self.hparams.inference_modes}
        from otcls.inference.scores import PRIOR_MODES

        known = torch.bincount(y, minlength=self.hparams.num_classes).double() / len(y)
        for mode in [m for m in self.hparams.inference_modes if m in PRIOR_MODES]:
            for prior in self.hparams.get("test_priors", ()):
                results[f"{mode}:{prior}"] = self._metrics(logits, y, mode, known if prior == "known" else prior)
        for mode, res in results.items():
            suffix = "" if mode == self.hparams.inference_modes[0] else f"/{mode}"
            for key in ("rocauc", "acc", "bal_acc"):
                self.log(f"test/{key}{suffix}", res[key], sync_dist=True)
        if self.trainer.is_global_zero:
            self._write_results(results)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class scores (first inference mode, per batch) of each graph."""
        return self.scores(self(batch))

    def _write_results(self, results: Dict[str, Dict[str, float]]) -> None:
        run_dir, stem = self.results_location("mol_test_results")
        os.makedirs(run_dir, exist_ok=True)
        dm = getattr(self.trainer, "datamodule", None)
        hp = self.hparams
        payload = {"dataset": getattr(dm, "name", None), "loss": hp.loss, "loss_kwargs": hp.loss_kwargs,
                   "conv": hp.conv, "virtual_node": hp.virtual_node, "class_counts": hp.class_counts,
                   "epoch": self.current_epoch, "results": results}
        with open(os.path.join(run_dir, f"{stem}.json"), "w") as fh:
            json.dump(payload, fh, indent=1, allow_nan=True)
        rows = [[mode, 100 * r["rocauc"], 100 * r["acc"], 100 * r["bal_acc"], r["n"]] for mode, r in results.items()]
        table = markdown_table(["inference", "ROC-AUC", "acc", "bal. acc", "n"], rows)
        with open(os.path.join(run_dir, f"{stem}.md"), "w") as fh:
            fh.write(f"# Test results — {payload['dataset']}, loss `{hp.loss}`\n\n{table}")
