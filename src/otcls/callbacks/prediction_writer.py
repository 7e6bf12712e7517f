"""``otcls predict`` output: one CSV row per sample with the class each inference mode predicts."""
from __future__ import annotations

import csv
import os
from typing import Any, Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from otcls.inference.scores import OT_MODES, PRIOR_MODES, inference_kwargs
from otcls.tasks.common import unique_first

PREDICT_PRIORS = ("uniform", "estimated", "train")


def prediction_columns(modes: Sequence[str], prior: str) -> List[tuple]:
    """``(column, mode)``: modes that take a test prior are named ``<mode>:<prior>``, as in ``test_results.json``."""
    return [(f"{mode}:{prior}" if mode in PRIOR_MODES else mode, mode) for mode in modes]


def _gather_by_index(logits: torch.Tensor, index: torch.Tensor, labels: Optional[torch.Tensor]) -> tuple:
    """Every rank's rows, one per sample index, in index order (ranks may hold unequal shares: objects are gathered)."""
    import torch.distributed as dist

    parts: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (logits, index, labels))
    logits, index = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    labels = None if labels is None else torch.cat([p[2] for p in parts])
    index, first = unique_first(index)
    return logits[first], index, None if labels is None else labels[first]


class PredictionWriter(BasePredictionWriter):
    """Writes ``path`` (CSV) after ``predict``: ``index``, ``label`` (when the batches carry labels), then the
    predicted class of softmax and of every inference mode of the model (``hparams.inference_modes``).

    Modes that need a test prior (``class_bias``, ``reot``, ``dbot``) get ``prior``: ``estimated`` (EM on the
    predicted set's own logits; the default, since the labels of new data are unknown), ``uniform`` or
    ``train``. OT modes use the model's ``inference_kwargs`` and ``ot_batch_size`` (seed 0), as ``otcls test`` does.
    Under DDP the ranks' logits are gathered (each sample once, by its index) and rank 0 scores and writes
    the whole set, so the file equals a one-process run's (OT couplings and EM see every sample).
    """

    def __init__(self, path: str, prior: str = "estimated") -> None:
        super().__init__(write_interval="epoch")
        if prior not in PREDICT_PRIORS:
            raise ValueError(f"PredictionWriter prior must be one of {', '.join(PREDICT_PRIORS)}; got '{prior}'")
        self.path, self.prior = path, prior

    def _predictions(self, pl_module: pl.LightningModule, logits: torch.Tensor) -> Dict[str, torch.Tensor]:
        hp = pl_module.hparams
        out = {}
        for column, mode in prediction_columns(hp.get("inference_modes", ("softmax",)), self.prior):
            kwargs = inference_kwargs(hp.get("inference_kwargs"), mode)
            if mode in OT_MODES:
                kwargs.update(batch_size=hp.get("ot_batch_size"), seed=0)
            out[column] = pl_module.head.predict(logits, mode=mode, test_prior=self.prior, **kwargs)
        return out

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if not batches:
            raise ValueError("otcls predict got no batches: check the DataModule's predict_dataloader")
        logits = torch.cat([b["logits"] for b in batches]).float().cpu()
        if "index" in batches[0]:
            index = torch.cat([b["index"] for b in batches]).cpu()
        else:
            index = torch.arange(len(logits))
        labels = torch.cat([b["target"] for b in batches]).cpu() if "target" in batches[0] else None
        if trainer.world_size > 1:
            if "index" not in batches[0]:
                raise ValueError("otcls predict on several processes needs predict batches that carry sample "
                                 "indices (x, y, index), to put the ranks' shares back together; run it on one device")
            logits, index, labels = _gather_by_index(logits, index, labels)
            if not trainer.is_global_zero:
                return
        preds = self._predictions(pl_module, logits)
        path = self.path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", *(["label"] if labels is not None else []), *preds])
            for i in range(len(logits)):
                label = [int(labels[i])] if labels is not None else []
                writer.writerow([int(index[i]), *label, *(int(p[i]) for p in preds.values())])
        print(f"otcls: predictions of {len(logits)} samples ({', '.join(preds)}) written to {path}")
