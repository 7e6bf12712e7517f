"""``otcls fit|validate|test|predict --config cfg.yaml``: LightningCLI with otcls defaults.

Configs name any LightningModule / LightningDataModule by ``class_path`` (subclass mode), so
image, molecule and segmentation tasks share this entry point. Defaults added here:

- run directory: ``--trainer.default_root_dir`` as given on the command line; otherwise
  ``<benchmark folder>/<loss>-s<seed>`` (the benchmark folder is the parent of the config's
  ``default_root_dir``, e.g. ``runs/fmnist_lt``; a fresh fit that would land in a finished run gets
  ``-v1``, ``-v2`` …; without any ``default_root_dir``, ``runs/<config stem>``): checkpoints in
  ``<run>/checkpoints`` (one sub-folder per run under ``wandb agent``; ``last.ckpt`` always, best by the module's ``checkpoint_monitor``),
  logs in ``<run>/logs/version_N`` (CSV always; W&B offline unless ``WANDB_MODE=online``,
  skipped with ``WANDB_MODE=disabled``); resume with ``--ckpt_path last``, which only takes this run's
  own ``last.ckpt`` and refuses a checkpoint trained with another loss.
- ``--test_after_fit true``: after ``fit``, run ``test`` on the best checkpoint in the same process.
- mixed precision (``bf16-mixed`` in the GPU configs) falls back to ``32-true`` on the CPU, with a line
  on stderr saying so.
- ``--model.init_args.loss`` (or ``--model.loss``) of an otcls task is checked against the loss registry when
  the command line is parsed, before any data is read.
- ``otcls test --ckpt_path X.ckpt`` writes ``X.test_results.{json,md}`` beside the checkpoint (the fit's
  ``test_results.json`` stays); ``otcls predict`` writes every inference mode's predicted class per sample
  to ``X.predictions.csv`` beside the checkpoint (``<run>/predictions.csv`` without one).
- class short names (``--model.help ImageClassifier``, ``class_path: FashionMNISTLTDataModule``) work for
  otcls's tasks and DataModules.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import List, Optional

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_warn

from otcls.callbacks.finite_loss import FiniteLossGuard
from otcls.tasks.common import checkpoint_sibling


def wandb_run_id(root: str) -> str:
    """The run folder's W&B id (``wandb_id.txt``, made once): a later ``otcls test`` or a resumed fit of the
    same folder attaches to the same W&B run instead of starting another. Under ``wandb agent`` the
    agent's own run id (``WANDB_RUN_ID``) is kept."""
    if os.environ.get("WANDB_RUN_ID"):
        return os.environ["WANDB_RUN_ID"]
    path = os.path.join(root, "wandb_id.txt")
    if os.path.isfile(path):
        with open(path) as fh:
            return fh.read().strip()
    import uuid

    run_id = uuid.uuid4().hex[:12]
    os.makedirs(root, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(run_id + "\n")
    return run_id


def default_loggers(root: str, identity: Optional[dict] = None) -> list:
    """CSV logger always; W&B (offline unless ``WANDB_MODE=online``) unless ``WANDB_MODE=disabled``. Without
    wandb installed: CSV only when ``WANDB_MODE`` is unset, an ``ImportError`` naming ``otcls[wandb]`` when set.

    ``identity`` (from :func:`wandb_identity`): W&B ``name`` (``<loss>-s<seed>``), ``group`` (the
    benchmark), ``job_type`` (the sub-command) and ``tags``, so a dashboard groups runs by benchmark
    and compares losses across seeds.
    """
    loggers = [CSVLogger(save_dir=root, name="logs")]
    mode = os.environ.get("WANDB_MODE", "offline").lower()
    if mode != "disabled" and importlib.util.find_spec("wandb") is None:
        from otcls._extras import require

        if "WANDB_MODE" in os.environ:  # asked for W&B by name: say how to get it
            require("wandb")
        # The default (offline W&B) on an install without the [wandb] extra: CSV only, with a warning.
        rank_zero_warn("otcls: wandb is not installed, logging to CSV only (pip install 'otcls[wandb]' for W&B)")
        return loggers
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        identity = identity or {"name": os.path.normpath(root).replace(os.sep, "/")}
        os.makedirs(root, exist_ok=True)
        loggers.append(WandbLogger(save_dir=root, project=os.environ.get("WANDB_PROJECT", "otcls"),
                                   offline=mode != "online", id=wandb_run_id(root), resume="allow",
                                   log_model=os.environ.get("OTCLS_WANDB_LOG_MODEL", "").lower() in ("1", "true"),
                                   **identity))
    return loggers


def wandb_identity(cfg, subcommand: str) -> dict:
    """W&B name / group / job_type / tags of a run from its resolved config."""
    data_args = init_args(cfg, "data")
    data_name = str(getattr(cfg.get("data"), "class_path", "data")).rpartition(".")[2].replace("DataModule", "")
    imbalance = data_args.get("imbalance_factor") if data_args is not None else None
    benchmark = data_name + (f"-IF{imbalance:g}" if isinstance(imbalance, (int, float)) else "")
    name = run_name(cfg)
    loss, seed = name.rsplit("-s", 1)
    tags = [f"loss:{loss}", f"benchmark:{benchmark}", f"seed:{seed}"]
    if imbalance is not None:
        tags.append(f"IF:{imbalance:g}" if isinstance(imbalance, (int, float)) else f"IF:{imbalance}")
    return {"name": name, "group": benchmark, "job_type": subcommand, "tags": tags}


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


def init_args(cfg, section: str):
    """``cfg.<section>.init_args`` (a Namespace) of a subclass-mode ``model`` / ``data`` entry; None if absent."""
    entry = cfg.get(section) if cfg is not None else None
    args = entry.get("init_args") if entry is not None and hasattr(entry, "get") else None
    return args if args is not None and hasattr(args, "get") else None


def run_name(cfg) -> str:
    """``<loss>-s<seed>``: a run's identity (the model class name for models without a loss)."""
    model = cfg.get("model")
    args = init_args(cfg, "model")
    loss = args.get("loss") if args is not None else None
    if not loss:
        loss = str(getattr(model, "class_path", "model")).rpartition(".")[2] if model is not None else "model"
    return f"{loss}-s{cfg.get('seed_everything')}"


def resolve_checkpoint_pattern(path: str, seed) -> str:
    """``{seed}`` → the run's seed; a glob (``*``, ``**``) → its newest match. Lets a config name "the CE run of
    this seed" (``runs/fmnist_lt/ce-s{seed}/**/best-*.ckpt``), also under a W&B agent's per-run folders."""
    import glob

    if "{seed}" in path:
        path = path.replace("{seed}", str(seed))
    if "*" not in path:
        return path
    matches = sorted(glob.glob(path, recursive=True), key=os.path.getmtime)
    if not matches:
        raise ValueError(f"no checkpoint matches '{path}': train the run it comes from first (for the DB-OT "
                         "fine-tuning and the RE-OT teacher: the CE config with the same seed)")
    return matches[-1]


def fresh_run_dir(root: str) -> str:
    """``root``, or ``root-vK`` (first free K) when ``root`` already holds a finished run: a new fit never
    writes into another run's folder."""
    def finished(path: str) -> bool:
        return (os.path.isfile(os.path.join(path, "checkpoints", "last.ckpt"))
                or os.path.isfile(os.path.join(path, "test_results.json")))

    if not finished(root):
        return root
    k = 1
    while finished(f"{root}-v{k}"):
        k += 1
    print(f"otcls: {root} holds a finished run; this run goes to {root}-v{k}", file=sys.stderr)
    return f"{root}-v{k}"


class OTCLSCLI(LightningCLI):
    def __init__(self, *args, explicit_root: bool = False, explicit_data_seed: bool = False, **kwargs) -> None:
        self.explicit_root = explicit_root  # --trainer.default_root_dir on the command line: used as given
        self.explicit_data_seed = explicit_data_seed
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        """The data seed (long-tailed subsample, validation hold-out, test variants) follows
        ``seed_everything`` unless ``--data.init_args.seed`` is given, so a sweep over seeds varies both."""
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        args = init_args(cfg, "data")
        seed = cfg.get("seed_everything") if cfg is not None else None
        if (not self.explicit_data_seed and args is not None and "seed" in args and isinstance(seed, int)
                and not isinstance(seed, bool)):
            args["seed"] = seed
        margs = init_args(cfg, "model")
        for key in ("init_checkpoint", "teacher_checkpoint"):
            if margs is not None and isinstance(margs.get(key), str):
                margs[key] = resolve_checkpoint_pattern(margs[key], seed)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        problem = unknown_loss(self.config[sub] if sub else self.config)
        if problem:
            (self._subcommand_parsers[sub] if sub else parser).error(problem)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="after fit, test the best checkpoint (every inference mode × test prior)")

    def _run_root(self) -> str:
        """The run folder: ``--trainer.default_root_dir`` given on the command line as is; otherwise the
        config's benchmark folder (the parent of its ``default_root_dir``) / ``<loss>-s<seed>``, with a
        ``-vK`` suffix when a fresh fit would land in a finished run."""
        cfg = self.config[self.subcommand]
        root = cfg.trainer.get("default_root_dir")
        if not root:
            configs = cfg.get("config") or []
            stem = os.path.splitext(os.path.basename(str(configs[0])))[0] if configs else "otcls"
            root = os.path.join("runs", stem)
        elif not self.explicit_root:
            root = os.path.join(os.path.dirname(os.path.normpath(str(root))), run_name(cfg))
            if self.subcommand == "fit" and not cfg.get("ckpt_path"):
                root = fresh_run_dir(root)
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
            kwargs["logger"] = default_loggers(root, wandb_identity(self.config[self.subcommand], self.subcommand))
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks) and trainer_cfg.get("enable_checkpointing", True) is not False:
            monitor = getattr(self.model, "checkpoint_monitor", None)
            ckpt = ModelCheckpoint(dirpath=os.path.join(root, "checkpoints"), save_last=True,
                                   monitor=monitor[0] if monitor else None, mode=monitor[1] if monitor else "min",
                                   filename="best-{epoch}-{step}" if monitor else "{epoch}-{step}")
            callbacks.append(ckpt)
        if not any(isinstance(c, FiniteLossGuard) for c in callbacks):
            callbacks.append(FiniteLossGuard())
        if kwargs.get("logger", trainer_cfg.get("logger")) not in (None, False):
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        if self.subcommand == "predict" and _writes_predictions(self.model):
            from otcls.callbacks.prediction_writer import PredictionWriter

            callbacks.append(PredictionWriter(beside_checkpoint(self.config[self.subcommand].get("ckpt_path"), root,
                                                                "predictions.csv")))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Lightning rebuilds the model from a checkpoint file's hyperparameters; refuse when that would
        silently replace the loss this command asks for (a checkpoint of another run)."""
        sub = self.config.get("subcommand")

        def loss() -> Optional[str]:
            args = init_args(self.config[sub], "model") if sub else None
            return args.get("loss") if args is not None else None

        asked = loss()
        super()._parse_ckpt_path()
        got = loss()
        if asked is not None and got is not None and asked != got:
            raise ValueError(f"--ckpt_path {self.config[sub].get('ckpt_path')} was trained with loss '{got}', this run "
                             f"uses '{asked}'; resume the run it belongs to")

    def _log_config_to_wandb(self) -> None:
        """The full resolved config (trainer, seed, callbacks incl. the λ schedule, model, data) once per run."""
        from lightning.pytorch.loggers import WandbLogger

        for lg in self.trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.experiment.config.update({"cli": self.config[self.subcommand].clone().as_dict()},
                                            allow_val_change=True)

    def before_test(self) -> None:
        self._log_config_to_wandb()
        if hasattr(self.model, "results_beside_checkpoint"):
            self.model.results_beside_checkpoint = True

    def before_fit(self) -> None:
        """``--ckpt_path last`` resumes this run only: its own ``last.ckpt``, trained with the same loss."""
        import torch

        self._log_config_to_wandb()
        path = self.config_init[self.subcommand].get("ckpt_path")
        if not path:
            return
        resolved = os.path.join(self.trainer.default_root_dir, "checkpoints", "last.ckpt") if path == "last" else path
        if not os.path.isfile(resolved):
            raise ValueError(f"--ckpt_path {path}: {resolved} does not exist, so there is nothing to resume for this run "
                             "(same configs, loss and seed as the run you want to continue?)")
        ckpt = torch.load(resolved, map_location="cpu", weights_only=False)
        theirs, mine = ckpt.get("hyper_parameters", {}).get("loss"), self.model.hparams.get("loss")
        if theirs is not None and mine is not None and theirs != mine:
            raise ValueError(f"--ckpt_path {path}: {resolved} was trained with loss '{theirs}', this run uses '{mine}'; "
                             "resume the run it belongs to")
        print(f"otcls: resuming {resolved} (epoch {ckpt.get('epoch')}, loss {theirs})", file=sys.stderr)
        self.config_init[self.subcommand]["ckpt_path"] = resolved

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        cb = self.trainer.checkpoint_callback
        ckpt = "best" if cb is not None and getattr(cb, "best_model_path", "") else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def unknown_loss(cfg) -> Optional[str]:
    """The error message when an otcls task's ``loss`` is not in the loss registry; None when it is (or when the
    model is not an otcls task: a user's own module may mean something else by ``loss``)."""
    model = cfg.get("model") if cfg is not None else None
    args = init_args(cfg, "model")
    if args is None or not str(getattr(model, "class_path", "")).startswith("otcls."):
        return None
    loss = args.get("loss")
    if not isinstance(loss, str):
        return None
    from otcls.losses import LOSSES

    if loss in LOSSES:
        return None
    return f"--model.init_args.loss: unknown loss '{loss}'; choose one of: {', '.join(LOSSES.names())}"


def beside_checkpoint(ckpt_path: Optional[str], run_root: str, name: str) -> str:
    """``<checkpoint without .ckpt>.<name>`` beside a checkpoint file; ``<run_root>/<name>`` without one."""
    if ckpt_path and os.path.isfile(str(ckpt_path)):
        return checkpoint_sibling(ckpt_path, name)
    return os.path.join(run_root, name)


def _writes_predictions(model) -> bool:
    from otcls.tasks.image import ImageClassifier

    return isinstance(model, ImageClassifier)


def import_otcls_classes(args: List[str]) -> None:
    """Import otcls's tasks and DataModules so their short class names resolve. The image task and the
    image DataModules always (the shipped configs use them anyway); every other task module only when a
    ``--model.help`` / ``--data.help`` asks for a short name, since some (segmentation, molecules) import slowly."""
    import importlib
    import pkgutil

    import otcls.data
    import otcls.tasks

    asked = [value for flag, value in zip(args, args[1:]) if flag in ("--model.help", "--data.help")]
    asked += [a.split("=", 1)[1] for a in args if a.startswith(("--model.help=", "--data.help="))]
    if not any("." not in name for name in asked):
        return
    for package in (otcls.tasks, otcls.data):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)


def run(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``otcls fit|validate|test|predict``; ``argv`` starts with the sub-command."""
    args = list(sys.argv[1:] if argv is None else argv)
    def given(key: str) -> bool:
        return any(a == key or a.startswith(key + "=") for a in args)

    import_otcls_classes(args)
    # LightningCLI warns (echoing the command twice) when it gets `args` and sys.argv has arguments too; from
    # the command line they are the same list, so let it read sys.argv itself.
    from_command_line = args == sys.argv[1:]
    OTCLSCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
             save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
             args=None if from_command_line else args,
             explicit_root=given("--trainer.default_root_dir"), explicit_data_seed=given("--data.init_args.seed"))
    return 0
