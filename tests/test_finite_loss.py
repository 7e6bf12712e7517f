"""The training stops with a clear message, naming epoch and step, when its loss stops being finite."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from otcls.callbacks import FiniteLossGuard, NonFiniteLossError
from otcls.heads import TransportHead


class BlowsUpAt(L.LightningModule):
    """A linear classifier whose loss turns NaN from batch ``bad_batch`` of epoch 0 on."""

    def __init__(self, bad_batch: int) -> None:
        super().__init__()
        self.head = TransportHead(4, 3, loss="ce")
        self.bad_batch = bad_batch

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.head.compute_loss(self.head(x), y)
        return loss * float("nan") if batch_idx >= self.bad_batch else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)),
                      batch_size=4)


def fit(module, guard, log_every_n_steps):
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=log_every_n_steps, callbacks=[guard])
    trainer.fit(module, loader())
    return trainer


def test_nan_loss_stops_at_the_first_logging_step_after_it():
    # NaN from batch 3 on; checked every 5 optimizer steps: the first check after it is at global step 5 (batch 4)
    with pytest.raises(NonFiniteLossError, match=r"not finite \(nan\) at epoch 0, global step 5 \(batch 4\)"):
        fit(BlowsUpAt(3), FiniteLossGuard(), log_every_n_steps=5)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, global step 4 \(batch 3\).*--ckpt_path"):
        fit(BlowsUpAt(3), FiniteLossGuard(every_n_steps=1), log_every_n_steps=50)


def test_the_last_batch_of_an_epoch_is_always_checked():
    # 10 batches, interval 50: only the epoch's last batch is checked
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, global step 10 \(batch 9\)"):
        fit(BlowsUpAt(9), FiniteLossGuard(), log_every_n_steps=50)


def test_a_finite_run_is_untouched():
    trainer = fit(BlowsUpAt(10 ** 6), FiniteLossGuard(every_n_steps=1), log_every_n_steps=1)
    assert trainer.global_step == 20


def test_bad_interval_is_rejected():
    with pytest.raises(ValueError, match="every_n_steps must be >= 1"):
        FiniteLossGuard(every_n_steps=0)


def test_otcls_fit_runs_the_guard_by_default(fmnist_root, tmp_path, monkeypatch):
    from otcls.lightning_cli import run

    from .test_cli_images import fmnist_args

    seen = []
    monkeypatch.setattr(FiniteLossGuard, "_due", lambda self, trainer, batch_idx: seen.append(batch_idx) or False)
    run(["fit", *fmnist_args(fmnist_root, str(tmp_path)), "--trainer.fast_dev_run", "2"])
    assert seen == [0, 1]
