"""Run by test_device_pipeline.py: a 2-process gloo DDP fit on the device pipeline that records, per rank and
epoch, which training images each step received (found by matching the un-augmented batch against the images)."""
from __future__ import annotations

import json
import os
import sys

import lightning as L
import torch

from otcls.data import CIFAR10LTDataModule


class Probe(L.LightningModule):
    def __init__(self, images: torch.Tensor, out: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.images = images.flatten(1)  # the normalised training images, in dataset order
        self.out, self.seen = out, {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        pos = torch.cdist(x.flatten(1), self.images).argmin(1)  # exact match: distance 0
        self.seen.setdefault(self.current_epoch, []).extend(pos.tolist())
        return (self.w * x.mean()).sum()

    def on_train_end(self):
        with open(os.path.join(self.out, f"rank{self.global_rank}.json"), "w") as fh:
            json.dump({"seen": self.seen, "n": len(self.images)}, fh)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def main(root: str, out: str) -> None:
    dm = CIFAR10LTDataModule(root=root, imbalance_factor=5, val_per_class=2, batch_size=8, augment="none",
                             pipeline="device", seed=0)
    dm.setup()
    ref = dm.batch_augment().normalize(dm._train_images)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Probe(ref, out), datamodule=dm)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
