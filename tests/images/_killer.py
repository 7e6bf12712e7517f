"""Test helper: a callback that SIGKILLs its own process at the start of a given epoch (a crash mid-training)."""
import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
