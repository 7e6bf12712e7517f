"""Test helpers for the resume test: a crash mid-training, and the λ a (resumed) run starts with."""
import json
import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    """SIGKILLs its own process at the start of epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordLambdaAtTrainStart(L.Callback):
    """Writes ``head.lam`` at train start (listed after the PriorSchedule, so after it restored a resumed λ)
    to ``path``, before any epoch recomputes λ."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        with open(self.path, "w") as fh:
            json.dump({"lam": pl_module.head.lam, "epoch": trainer.current_epoch}, fh)
