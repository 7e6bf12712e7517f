"""``otcls fit|validate|test|predict --config cfg.yaml``: LightningCLI with otcls defaults.

Configs name any LightningModule / LightningDataModule by ``class_path`` (subclass mode), so
image, molecule and segmentation tasks share this entry point. Defaults added here:

- run directory ``trainer.default_root_dir`` (default ``runs/<config stem>``): checkpoints in
  ``<run>/checkpoints`` (one sub-folder per run under ``wandb agent``; ``last.ckpt`` always, best by the module's ``checkpoint_monitor``),
  logs in ``<run>/logs/version_N`` (CSV always; W&B offline unless ``WANDB_MODE=online``,
  skipped with ``WANDB_MODE=disabled``); resume with ``--ckpt_path last``.
- ``--test_after_fit true``: after ``fit``, run ``test`` on the best checkpoint in the same process.
- mixed precision (``bf16-mixed`` in the GPU configs) falls back to ``32-true`` on the CPU, with a line
  on stderr saying so.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger


def default_loggers(root: str) -> list:
    """CSV logger always; W&B (offline unless ``WANDB_MODE=online``) unless ``WANDB_MODE=disabled``."""
    loggers = [CSVLogger(save_dir=root, name="logs")]
    mode = os.environ.get("WANDB_MODE", "offline").lower()
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        os.makedirs(root, exist_ok=True)
        loggers.append(WandbLogger(save_dir=root, project=os.environ.get("WANDB_PROJECT", "otcls"),
                                   name=os.path.normpath(root).replace(os.sep, "/"), offline=mode != "online"))
    return loggers


def cpu_precision_fallback(precision, accelerator) -> Optional[str]:
    """``"32-true"`` when a mixed-precision setting (the GPU configs' ``bf16-mixed``) would run on the CPU,
    where autocast is slow or unsupported; None to keep the configured precision. Says so on stderr."""
    import torch

    if precision is None or "mixed" not in str(precision):
        return None
    on_cpu = str(accelerator) == "cpu" or (str(accelerator) in ("auto", "None") and not torch.cuda.is_available())
    if not on_cpu:
        return None
    print(f"otcls: precision '{precision}' needs a GPU; running in 32-true on the CPU", file=sys.stderr)
    return "32-true"


class OTCLSCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="after fit, test the best checkpoint (every inference mode × test prior)")

    def _run_root(self) -> str:
        cfg = self.config[self.subcommand]
        root = cfg.trainer.get("default_root_dir")
        if not root:
            configs = cfg.get("config") or []
            stem = os.path.splitext(os.path.basename(str(configs[0])))[0] if configs else "otcls"
            root = os.path.join("runs", stem)
        if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # launched by `wandb agent`
            root = os.path.join(str(root), os.environ["WANDB_RUN_ID"])
        return str(root)

    def instantiate_trainer(self, **kwargs):
        root = self._run_root()
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        kwargs["default_root_dir"] = root
        precision = cpu_precision_fallback(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
        if precision is not None:
            kwargs["precision"] = precision
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(root)
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks) and trainer_cfg.get("enable_checkpointing", True) is not False:
            monitor = getattr(self.model, "checkpoint_monitor", None)
            ckpt = ModelCheckpoint(dirpath=os.path.join(root, "checkpoints"), save_last=True,
                                   monitor=monitor[0] if monitor else None, mode=monitor[1] if monitor else "min",
                                   filename="best-{epoch}-{step}" if monitor else "{epoch}-{step}")
            callbacks.append(ckpt)
        if kwargs.get("logger", trainer_cfg.get("logger")) not in (None, False):
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        cb = self.trainer.checkpoint_callback
        ckpt = "best" if cb is not None and getattr(cb, "best_model_path", "") else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def run(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``otcls fit|validate|test|predict``; ``argv`` starts with the sub-command."""
    OTCLSCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
             save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
             args=list(sys.argv[1:] if argv is None else argv))
    return 0
