"""The finite-loss guard under a real 2-process CPU DDP (gloo): a loss that is NaN on rank 1 only stops both ranks."""
from __future__ import annotations

import os
import socket

import lightning as L
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from otcls.callbacks import FiniteLossGuard, NonFiniteLossError


class NanOnRank(L.LightningModule):
    """A linear model whose loss is NaN on rank ``bad_rank`` from batch 2 on."""

    def __init__(self, bad_rank: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        self.bad_rank = bad_rank

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        return loss * float("nan") if self.global_rank == self.bad_rank and batch_idx >= 2 else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank), NODE_RANK="0",
                      WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)),
                      batch_size=2)
    trainer = L.Trainer(accelerator="cpu", devices=world, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[FiniteLossGuard(every_n_steps=1)])
    try:
        trainer.fit(NanOnRank(bad_rank=1), data)
        outcome = f"finished at step {trainer.global_step}"
    except NonFiniteLossError as exc:
        outcome = f"stopped: {exc}"
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
        fh.write(outcome)


def test_nan_on_rank_one_only_stops_every_rank(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        # each rank has 8 batches; rank 1's loss turns NaN at batch 2 = global step 3 (checked after the step)
        assert outcome.startswith("stopped:"), (rank, outcome)
        assert "global step 3 (batch 2)" in outcome, (rank, outcome)
