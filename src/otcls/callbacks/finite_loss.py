"""Stop training with a clear message when the training loss stops being finite."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class FiniteLossGuard(pl.Callback):
    """Raises :class:`NonFiniteLossError` (naming the epoch and step) when the training loss is NaN/inf.

    The loss is read only on logging steps (every ``trainer.log_every_n_steps`` optimizer steps, and on
    the epoch's last batch), where Lightning already moves logged values to the host, so the check
    adds no per-step device synchronisation. All ranks take the same decision, so a DDP run stops on
    every process instead of hanging in the next collective. On by default in ``otcls fit``.

    Args:
        every_n_steps: check interval in optimizer steps; ``None`` = the trainer's ``log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None; got {every_n_steps}")
        self.every_n_steps = every_n_steps

    def _due(self, trainer: pl.Trainer, batch_idx: int) -> bool:
        every = self.every_n_steps or max(int(trainer.log_every_n_steps), 1)
        last = trainer.num_training_batches != float("inf") and batch_idx + 1 >= trainer.num_training_batches
        return trainer.global_step % every == 0 or last

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._due(trainer, batch_idx):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return  # manual optimisation without a returned loss: nothing to check
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        raise NonFiniteLossError(
            f"the training loss is not finite ({float(loss.detach())}) at epoch {trainer.current_epoch}, "
            f"global step {trainer.global_step} (batch {batch_idx}). Look for NaN/inf in the inputs or labels, "
            "lower the learning rate or enable gradient clipping (trainer.gradient_clip_val), or resume from the "
            "last finite checkpoint with --ckpt_path")
