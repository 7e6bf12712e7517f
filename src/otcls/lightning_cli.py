"""``otcls fit|validate|test|predict --config cfg.yaml``: LightningCLI with otcls defaults.

Configs name any LightningModule / LightningDataModule by ``class_path`` (subclass mode), so
image, molecule and segmentation tasks share this entry point. Defaults added here:

- run identity: ``<method>-s<seed>``, ``<method>`` being ``--run_name`` (or ``run_name:`` in a config) if given,
  else the method config's name: the last folder of the ``trainer.default_root_dir`` the ``--config`` files set
  (``configs/fmnist_lt/ldam_drw.yaml`` sets ``runs/fmnist_lt/ldam_drw``, so ``ldam_drw-s0``), else the loss. It is
  the W&B run name (tags: loss, benchmark, seed, IF) and is written to ``<run>/run.json`` for the reports.
- run directory: ``--trainer.default_root_dir`` as given on the command line; otherwise
  ``<benchmark folder>/<identity>`` (the benchmark folder is the parent of the config's ``default_root_dir``,
  e.g. ``runs/fmnist_lt``; without any ``default_root_dir``, ``runs/<first config's stem>``). A fresh fit claims
  its folder atomically (``os.mkdir``; ``-v1``, ``-v2`` … when taken), so two runs started at once never share
  one. Checkpoints in ``<run>/checkpoints`` (one sub-folder per run under ``wandb agent``): ``last.ckpt`` the
  last epoch, always; ``best-*.ckpt`` by the module's ``checkpoint_monitor``),
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
from typing import List, Optional, Sequence

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


def wandb_identity(cfg, subcommand: str, method: Optional[str] = None) -> dict:
    """W&B name (:func:`run_name`) / group (the benchmark) / job_type / tags (loss, benchmark, seed, IF) of a run
    from its resolved config; ``method``: the method config's name (see :func:`run_name`)."""
    data_args = init_args(cfg, "data")
    data_name = str(getattr(cfg.get("data"), "class_path", "data")).rpartition(".")[2].replace("DataModule", "")
    imbalance = data_args.get("imbalance_factor") if data_args is not None else None
    benchmark = data_name + (f"-IF{imbalance:g}" if isinstance(imbalance, (int, float)) else "")
    name = run_name(cfg, method)
    tags = [f"loss:{loss_name(cfg)}", f"benchmark:{benchmark}", f"seed:{cfg.get('seed_everything')}",
            f"method:{name.rsplit('-s', 1)[0]}"]
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


def loss_name(cfg) -> str:
    """The run's loss (the model class name for models without a loss)."""
    model = cfg.get("model")
    args = init_args(cfg, "model")
    loss = args.get("loss") if args is not None else None
    if not loss:
        loss = str(getattr(model, "class_path", "model")).rpartition(".")[2] if model is not None else "model"
    return str(loss)


def run_name(cfg, method: Optional[str] = None) -> str:
    """``<method>-s<seed>``: a run's identity. ``<method>``: ``run_name`` of the config if set, else ``method`` (the
    method config's name, :func:`method_from_configs`), else the loss."""
    name = cfg.get("run_name") or method or loss_name(cfg)
    return f"{name}-s{cfg.get('seed_everything')}"


def _config_files(args: List[str]) -> List[dict]:
    """The parsed YAML of each ``--config`` file in ``args``, in order (YAML strings and unreadable files are
    skipped: LightningCLI says what is wrong with them)."""
    import yaml

    paths = [value for flag, value in zip(args, args[1:]) if flag == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    out = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            with open(path) as fh:
                cfg = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(cfg, dict):
            out.append(cfg)
    return out


def _nested(cfg, *keys: str):
    for key in keys:
        cfg = cfg.get(key) if isinstance(cfg, dict) else None
    return cfg


def method_from_configs(args: List[str]) -> Optional[str]:
    """The method config's name: the last folder of the last ``trainer.default_root_dir`` that a ``--config``
    file sets (a command-line ``--trainer.default_root_dir`` does not count: a sweep's ``.../ldam_drw/seed0`` must
    not rename the method). None when no config file sets one."""
    name = None
    for cfg in _config_files(args):
        root = _nested(cfg, "trainer", "default_root_dir")
        if isinstance(root, str) and root.strip():
            name = os.path.basename(os.path.normpath(root))
    return name


def method_of_run(cfg, args: List[str]) -> Optional[str]:
    """:func:`method_from_configs`, unless the resolved loss of ``cfg`` is not the last one the config files set:
    another loss given on the command line (in any spelling) on top of a method config is another method, and the
    loss then names the run."""
    losses = [loss for loss in (_nested(f, "model", "init_args", "loss") for f in _config_files(args)) if loss]
    if losses and loss_name(cfg) != str(losses[-1]):
        return None
    return method_from_configs(args)


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


def claim_run_dir(root: str) -> str:
    """Create and return ``root``, or ``root-vK`` (first K whose folder does not exist yet), with ``os.mkdir``: the
    creation is atomic, so two fits started at the same moment never get the same folder, and a fresh fit never
    writes beside another attempt's checkpoints and logs."""
    parent = os.path.dirname(os.path.abspath(root))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the run folder's parent '{parent}' ({err.strerror or err}); choose a "
                         "writable place with --trainer.default_root_dir") from err
    candidate, k = root, 0
    while True:
        try:
            os.mkdir(candidate)
        except FileExistsError:
            k += 1
            candidate = f"{root}-v{k}"
            continue
        except OSError as err:
            raise ValueError(f"cannot create the run folder '{candidate}' ({err.strerror or err}); choose a "
                             "writable place with --trainer.default_root_dir") from err
        break
    if k:
        print(f"otcls: {root} is taken by another run; this run goes to {candidate}", file=sys.stderr)
    return candidate


def _rank_nonzero() -> bool:
    """A non-zero rank of a multi-process launch (Lightning's DDP launcher or torchrun)."""
    return any(os.environ.get(key, "0") not in ("", "0") for key in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _require_last_checkpoint(root: str) -> str:
    """``<root>/checkpoints/last.ckpt``; a ValueError when it does not exist (``--ckpt_path last``)."""
    resolved = os.path.join(root, "checkpoints", "last.ckpt")
    if not os.path.isfile(resolved):
        raise ValueError(f"--ckpt_path last: {resolved} does not exist, so there is nothing to resume for this run "
                         "(same configs, loss and seed as the run you want to continue?)")
    return resolved


def check_checkpoint_file(path: str) -> None:
    """A ValueError naming ``path`` when it is missing, a folder, empty, or not a whole checkpoint archive (a file
    cut short by an interrupted write loses the zip directory at its end). Reads no tensors."""
    import zipfile

    if not os.path.exists(path):
        raise ValueError(f"--ckpt_path {path} does not exist; give the .ckpt file of a finished fit "
                         "(<run>/checkpoints/last.ckpt or best-*.ckpt)")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint '{path}' is a folder; give the .ckpt file inside it (e.g. checkpoints/last.ckpt)")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint '{path}' is empty (0 bytes): the run that wrote it was interrupted; use "
                         "another checkpoint of the run (best-*.ckpt) or retrain")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint '{path}' is truncated or not a checkpoint written by torch.save (no zip "
                         "archive directory); use another checkpoint of the run or retrain")


def load_checkpoint_file(path: str) -> dict:
    """``torch.load`` of a Lightning checkpoint on the CPU; a ValueError naming the file when it is empty, truncated
    or not a checkpoint (instead of pickle's / zipfile's ``EOFError`` / ``OSError``)."""
    import torch

    check_checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, OSError, UnpicklingError … for a broken file
        raise ValueError(f"checkpoint '{path}' cannot be read ({type(err).__name__}: {err}); it is truncated or not "
                         "a Lightning checkpoint: use another checkpoint of the run or retrain") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint '{path}' is not a Lightning checkpoint (no 'state_dict'); give a .ckpt written "
                         "by otcls fit")
    return ckpt


def ensure_writable_dir(path: str, what: str) -> None:
    """Create ``path`` (and parents) or raise a ValueError saying why it cannot be, before any training."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} '{path}' is a file, not a folder; choose another --trainer.default_root_dir")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {what} '{path}' ({err.strerror or err}); choose a writable place with "
                         "--trainer.default_root_dir") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{what} '{path}' is not writable; choose another --trainer.default_root_dir")


def check_trainer_length(trainer) -> None:
    """``otcls fit`` needs a finite run: the otcls tasks' λ(t) and cosine schedules are fractions of
    ``max_epochs`` / the estimated steps. A ValueError for ``max_epochs`` below 1 (``-1`` is Lightning's
    "forever") or ``max_steps`` below -1 or 0."""
    if trainer is None or not hasattr(trainer, "get"):
        return
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"--trainer.max_epochs must be an integer >= 1, got {epochs!r}: otcls's schedules "
                         "(warm-up, cosine, λ(t), DRW) are fractions of a finite run")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps == 0 or steps < -1):
        raise ValueError(f"--trainer.max_steps must be -1 (no step limit) or >= 1, got {steps!r}")


class OTCLSCLI(LightningCLI):
    def __init__(self, *args, explicit_root: bool = False, explicit_data_seed: bool = False,
                 method_args: Sequence[str] = (), **kwargs) -> None:
        self.explicit_root = explicit_root  # --trainer.default_root_dir on the command line: used as given
        self.explicit_data_seed = explicit_data_seed
        self.method_args = list(method_args)  # the command line, for the run's method (method_of_run)
        self.method: Optional[str] = None
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        """The data seed (long-tailed subsample, validation hold-out, test variants) follows
        ``seed_everything`` unless ``--data.init_args.seed`` is given, so a sweep over seeds varies both. The run's
        method (its identity) is settled here, from the resolved config (:func:`method_of_run`)."""
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        self.method = method_of_run(cfg, self.method_args)
        args = init_args(cfg, "data")
        seed = cfg.get("seed_everything") if cfg is not None else None
        if (not self.explicit_data_seed and args is not None and "seed" in args and isinstance(seed, int)
                and not isinstance(seed, bool)):
            args["seed"] = seed
        if self.subcommand == "fit":
            check_trainer_length(cfg.get("trainer"))
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
        parser.add_argument("--run_name", type=Optional[str], default=None,
                            help="the run's method name (identity <run_name>-s<seed>: W&B name, run folder); "
                                 "default: the last folder of the method config's trainer.default_root_dir")

    def _run_root(self) -> str:
        """The run folder: ``--trainer.default_root_dir`` given on the command line as is; otherwise the
        config's benchmark folder (the parent of its ``default_root_dir``) / the run's identity. A fresh fit
        claims a folder of its own (:func:`claim_run_dir`); its other ranks take the one rank 0 claimed."""
        cfg = self.config[self.subcommand]
        root = cfg.trainer.get("default_root_dir")
        agent = os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID")  # launched by `wandb agent`
        if self.explicit_root and root:
            root = str(root)
        else:
            if root:
                root = os.path.join(os.path.dirname(os.path.normpath(str(root))), run_name(cfg, self.method))
            else:
                configs = cfg.get("config") or []
                stem = os.path.splitext(os.path.basename(str(configs[0])))[0] if configs else "otcls"
                root = os.path.join("runs", stem)
            if self.subcommand == "fit" and not cfg.get("ckpt_path") and not agent:
                if _rank_nonzero():
                    # Lightning's DDP launcher starts the other ranks with rank 0's environment; under torchrun
                    # (every rank at once) there is nothing to inherit: pass --trainer.default_root_dir there.
                    root = os.environ.get("OTCLS_RUN_DIR") or root
                else:
                    root = claim_run_dir(root)
                    os.environ["OTCLS_RUN_DIR"] = root
        if agent:
            root = os.path.join(str(root), os.environ["WANDB_RUN_ID"])
        if self.subcommand == "fit" and cfg.get("ckpt_path") == "last":
            _require_last_checkpoint(str(root))  # before the folder is created
        if not _rank_nonzero():
            ensure_writable_dir(str(root), "the run folder")
        return str(root)

    def _write_identity(self, root: str, identity: dict) -> None:
        """``<run>/run.json``: the run's identity, loss, seed and benchmark, read by ``otcls report``."""
        import json

        if _rank_nonzero():
            return
        path = os.path.join(root, "run.json")
        if self.subcommand != "fit" and os.path.isfile(path):
            return
        cfg = self.config[self.subcommand]
        record = {"name": identity["name"], "method": identity["name"].rsplit("-s", 1)[0], "loss": loss_name(cfg),
                  "seed": cfg.get("seed_everything"), "benchmark": identity["group"], "tags": identity["tags"]}
        with open(path, "w") as fh:
            json.dump(record, fh, indent=1)

    def instantiate_trainer(self, **kwargs):
        root = self._run_root()
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        kwargs["default_root_dir"] = root
        precision = cpu_precision_fallback(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))
        if precision is not None:
            kwargs["precision"] = precision
        identity = wandb_identity(self.config[self.subcommand], self.subcommand, self.method)
        self._write_identity(root, identity)
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(root, identity)
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks) and trainer_cfg.get("enable_checkpointing", True) is not False:
            monitor = getattr(self.model, "checkpoint_monitor", None)
            folder = os.path.join(root, "checkpoints")
            if monitor:
                # The best checkpoint first (trainer.checkpoint_callback, "best" of --test_after_fit). Lightning's
                # save_last only writes last.ckpt in an epoch whose top-k checkpoint was saved, so last.ckpt has
                # a callback of its own that writes it at the end of every training epoch.
                callbacks.append(ModelCheckpoint(dirpath=folder, monitor=monitor[0], mode=monitor[1],
                                                 filename="best-{epoch}-{step}"))
                callbacks.append(ModelCheckpoint(dirpath=folder, filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
                                                 monitor=None, save_top_k=1, save_on_train_epoch_end=True,
                                                 enable_version_counter=False))
            else:
                # Without a metric the newest checkpoint is saved every epoch, so save_last keeps last.ckpt current
                # (a second callback without a monitor would share this one's state key).
                callbacks.append(ModelCheckpoint(dirpath=folder, filename="{epoch}-{step}", save_last=True))
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
        path = self.config[sub].get("ckpt_path") if sub else None
        if isinstance(path, str) and path not in ("last", "best", "hpc", "registry") and "://" not in path:
            check_checkpoint_file(path)  # before Lightning's torch.load, which fails with pickle's or zipfile's words
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

    def _check_classes(self) -> None:
        """A checkpoint's class count against the data's, before any evaluation loop (else the error comes from
        torchmetrics or only after the whole loop)."""
        want = getattr(self.model, "hparams", {}).get("num_classes")
        dm = self.datamodule
        if want is None or dm is None:
            return
        have = getattr(dm, "num_classes", None)
        if not have and hasattr(dm, "setup"):
            dm.setup(self.subcommand)  # DataModules that learn the class count from their files (idempotent)
            have = getattr(dm, "num_classes", None)
        if have and int(have) != int(want):
            ckpt = self.config[self.subcommand].get("ckpt_path")
            raise ValueError(f"the model{f' of --ckpt_path {ckpt}' if ckpt else ''} has {want} classes but "
                             f"{type(dm).__name__} has {have}; test a checkpoint trained on this data")

    def before_validate(self) -> None:
        self._check_classes()

    def before_predict(self) -> None:
        self._check_classes()

    def before_test(self) -> None:
        self._check_classes()
        self._log_config_to_wandb()
        if hasattr(self.model, "results_beside_checkpoint"):
            self.model.results_beside_checkpoint = True

    def before_fit(self) -> None:
        """``--ckpt_path last`` resumes this run only: its own ``last.ckpt``, trained with the same loss."""

        self._log_config_to_wandb()
        path = self.config_init[self.subcommand].get("ckpt_path")
        if not path:
            return
        resolved = _require_last_checkpoint(self.trainer.default_root_dir) if path == "last" else path
        if not os.path.isfile(resolved):
            raise ValueError(f"--ckpt_path {path}: {resolved} does not exist, so there is nothing to resume for this run "
                             "(same configs, loss and seed as the run you want to continue?)")
        ckpt = load_checkpoint_file(resolved)
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
             explicit_root=given("--trainer.default_root_dir"), explicit_data_seed=given("--data.init_args.seed"),
             method_args=args)
    return 0
