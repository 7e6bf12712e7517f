"""λ(t) PriorSchedule: hand-checked values, logging, and exact restore from a checkpoint."""
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from otcls.callbacks.prior_schedule import PriorSchedule
from otcls.heads import TransportHead


def test_schedule_values_by_hand():
    assert PriorSchedule("constant", value=0.3).lam_at(7, 9) == 0.3
    lin = PriorSchedule("linear", start=0.2, end=1.0, begin=1, until=5)
    assert [lin.lam_at(t, 99) for t in (0, 1, 3, 5, 8)] == pytest.approx([0.2, 0.2, 0.6, 1.0, 1.0])
    assert PriorSchedule("linear").lam_at(2, 4) == pytest.approx(0.5)  # until = horizon (last epoch 4)
    cos = PriorSchedule("cosine", begin=0, until=4)
    assert cos.lam_at(1, 0) == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    step = PriorSchedule("step", start=0.1, end=0.9, at=3)
    assert (step.lam_at(2, 9), step.lam_at(3, 9)) == (0.1, 0.9)
    pw = PriorSchedule("piecewise", t1=2, t2=6, t3=8, sharpen=1.03)
    assert [pw.lam_at(t, 0) for t in (0, 2, 4, 6, 9)] == pytest.approx([0, 0, 0.5, 1, 1])
    assert [pw.sharpen_at(t) for t in (7, 8, 9)] == pytest.approx([1.0, 1.03, 1.03 ** 2])
    assert PriorSchedule("piecewise", t3=2, compound=False).sharpen_at(5) == 1.03


def test_schedule_errors():
    with pytest.raises(ValueError, match="unknown prior schedule kind 'exp'"):
        PriorSchedule("exp")
    with pytest.raises(ValueError, match="t1 <= t2 <= t3"):
        PriorSchedule("piecewise", t1=3, t2=2)
    with pytest.raises(ValueError, match="interval"):
        PriorSchedule(interval="batch")


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.head = TransportHead(3, 2, loss="reot", class_counts=[12, 4])
        self.seen = []  # (epoch, step, λ, sharpen) at every training step
        self.lam_at_train_start = None

    def on_train_start(self):
        self.lam_at_train_start = self.head.lam

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((self.current_epoch, self.global_step, self.head.lam, self.head.loss.sharpen))
        return self.head.compute_loss(self.head(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0.5).long()), batch_size=4)


class _Interrupt(pl.Callback):
    """Stops the run after ``epochs`` epochs, as a killed job would (same max_epochs)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def _fit(tmp, epochs, schedule, ckpt=None, stop_after=None):
    torch.manual_seed(0)
    model = _Tiny()
    save = stop_after is not None
    callbacks = [schedule] + ([_Interrupt(stop_after), ModelCheckpoint(dirpath=tmp, save_last=True)] if save else [])
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks, enable_checkpointing=save)
    trainer.fit(model, _loader(), ckpt_path=ckpt)
    return model, trainer


@pytest.mark.parametrize("make", [
    lambda: PriorSchedule("piecewise", t1=1, t2=3, t3=4, interval="epoch"),
    lambda: PriorSchedule("cosine", interval="step"),
])
def test_resume_from_checkpoint_continues_exactly(tmp_path, make):
    full, trainer = _fit(tmp_path / "a", 6, make())
    assert "lam" in trainer.callback_metrics
    stopped, _ = _fit(tmp_path / "b", 6, make(), stop_after=3)
    assert len(stopped.seen) == 3 * 4
    ckpt = tmp_path / "b" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["callbacks"]  # the schedule state is in the checkpoint
    resumed, _ = _fit(tmp_path / "c", 6, make(), ckpt=str(ckpt))
    assert resumed.lam_at_train_start == pytest.approx(full.seen[3 * 4 - 1][2])  # λ of the last saved step
    assert resumed.seen == full.seen[3 * 4:]
    lams = [s[2] for s in full.seen]
    assert lams[0] == 0.0 and lams[-1] == pytest.approx(1.0) and lams == sorted(lams)


def test_resume_with_other_schedule_is_refused():
    sched = PriorSchedule("linear")
    with pytest.raises(ValueError, match="resume with the same schedule"):
        sched.load_state_dict({"kind": "cosine", "interval": "epoch", "lam": 0.5, "sharpen": 1.0})


def _logged(tmp, schedule, epochs, key="lam"):
    """Values of ``key`` in the CSV log, one per epoch (epoch interval) or per step (step interval)."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(0)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=CSVLogger(str(tmp), name="log"),
                         log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, callbacks=[schedule])
    trainer.fit(_Tiny(), _loader())
    with open(trainer.logger.experiment.metrics_file_path) as fh:
        return [float(row[key]) for row in csv.DictReader(fh) if row.get(key)]


def test_default_horizon_is_the_last_epoch(tmp_path):
    # no `until`: λ reaches its end at the last epoch (max_epochs - 1), as the contrastive RE-OT configs assume
    assert _logged(tmp_path, PriorSchedule("linear"), 4) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def test_default_horizon_is_the_last_step(tmp_path):
    # 2 epochs × 4 batches: steps 0..7, λ = step / 7
    assert _logged(tmp_path, PriorSchedule("linear", interval="step"), 2) == pytest.approx([s / 7 for s in range(8)])
