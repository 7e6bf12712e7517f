"""λ(t) schedule for the RE-OT prior Q = (1-λ)·Uniform + λ·r, as a Lightning Callback."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import lightning.pytorch as pl

KINDS = ("constant", "linear", "cosine", "step", "piecewise", "reot_authors")
INTERVALS = ("epoch", "step")


class PriorSchedule(pl.Callback):
    """Sets ``pl_module.head.lam`` from the epoch (``interval="epoch"``) or global step.

    With t the epoch/step and s = clip((t - begin) / (until - begin), 0, 1):

    - ``constant``: λ = ``value``;
    - ``linear``: λ = start + (end - start)·s;
    - ``cosine``: λ = start + (end - start)·(1 - cos πs)/2;
    - ``step``: λ = start for t < ``at``, else end;
    - ``piecewise`` (RE-OT authors' code): λ = 0 for t < t1, (t - t1)/(t2 - t1) up to t2,
      1 afterwards; from t3 on the prior is sharpened, Q ← Q^p / Σ_j Q^p, by setting
      ``head.loss.sharpen = p``, where p = ``sharpen`` (1.03), compounded per unit of time
      (p^(t - t3 + 1)) when ``compound`` is True, as if Q were re-sharpened every epoch.

    - ``reot_authors``: the schedule of the RE-OT authors' public code (LiangliangShi/RE-OT,
      ``loss/REOT.py``, ``ot_softmax_loss``), in their 1-based epoch τ: Q uniform for τ <= t1;
      Q ∝ (t2 - τ)·1 + (τ - t1)·r elementwise for t1 < τ <= t2 (their unnormalised blend, so
      λ = (τ - t1) / ((τ - t1) + K·(t2 - τ)) with K classes, not linear in τ); Q = r for τ <= t3;
      Q = r^p / Σ_j r^p (p = ``sharpen``, 1.03, applied once, not compounded) after t3. Their Q is
      renormalised (``Q / Q.sum()``). With t2 <= t1 (their CIFAR-10 config) the ramp is empty: a step
      at t1. r is the loss's prior; their r is ``prior: mix`` with ``mix`` = their ``lamb``. τ is our
      0-based epoch + 1, rescaled by ``reference_epochs / max_epochs`` when ``reference_epochs`` (the
      length of their run in epochs) is set, so the phases keep their place in a shorter run.

    ``until`` defaults to the last epoch (max_epochs - 1) or the last step. λ is logged as
    ``lam`` (and ``sharpen`` for piecewise); the schedule state is saved in checkpoints and
    written back to the head when training resumes.
    """

    def __init__(self, kind: str = "linear", *, value: float = 1.0, start: float = 0.0, end: float = 1.0,
                 begin: float = 0.0, until: Optional[float] = None, at: float = 0.0,
                 t1: float = 0.0, t2: float = 1.0, t3: float = math.inf, sharpen: float = 1.03,
                 compound: bool = True, interval: str = "epoch",
                 reference_epochs: Optional[float] = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown prior schedule kind '{kind}'; choose one of: {', '.join(KINDS)}")
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}; got '{interval}'")
        for name, v in (("value", value), ("start", start), ("end", end)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"PriorSchedule {name} must lie in [0, 1]; got {v}")
        if kind == "piecewise" and not (0 <= t1 <= t2 <= t3):
            raise ValueError(f"piecewise schedule needs 0 <= t1 <= t2 <= t3; got t1={t1}, t2={t2}, t3={t3}")
        if kind == "reot_authors":
            if interval != "epoch":
                raise ValueError("the reot_authors schedule is defined per epoch; use interval='epoch'")
            if not (0 <= t1 and 0 <= t2 and max(t1, t2) <= t3):
                raise ValueError(f"reot_authors schedule needs t1, t2 >= 0 and max(t1, t2) <= t3; "
                                 f"got t1={t1}, t2={t2}, t3={t3}")
        if reference_epochs is not None and not reference_epochs > 0:
            raise ValueError(f"reference_epochs must be > 0 (the authors' run length in epochs); got {reference_epochs}")
        if until is not None and until <= begin and kind in ("linear", "cosine"):
            raise ValueError(f"until ({until}) must be > begin ({begin})")
        if sharpen <= 0:
            raise ValueError(f"sharpen power must be > 0; got {sharpen}")
        self.kind, self.interval = kind, interval
        self.value, self.start, self.end, self.begin, self.until, self.at = value, start, end, begin, until, at
        self.t1, self.t2, self.t3, self.sharpen, self.compound = t1, t2, t3, sharpen, compound
        self.reference_epochs = reference_epochs
        self.last: Dict[str, float] = {}

    # -- the schedule itself -------------------------------------------------------------
    def lam_at(self, t: float, horizon: float) -> float:
        """λ at time t; ``horizon`` (last epoch/step) replaces ``until`` when that is None."""
        if self.kind == "reot_authors":
            raise ValueError("the reot_authors schedule depends on the number of classes; use authors_at(tau, K)")
        if self.kind == "constant":
            return self.value
        if self.kind == "step":
            return self.start if t < self.at else self.end
        if self.kind == "piecewise":
            if t < self.t1:
                return 0.0
            return 1.0 if t >= self.t2 else (t - self.t1) / (self.t2 - self.t1)
        until = self.until if self.until is not None else max(horizon, self.begin + 1)
        s = min(max((t - self.begin) / (until - self.begin), 0.0), 1.0)
        shape = s if self.kind == "linear" else (1.0 - math.cos(math.pi * s)) / 2.0
        return self.start + (self.end - self.start) * shape

    def sharpen_at(self, t: float) -> float:
        """Power applied to Q at time t (1 = none); only the piecewise kind sharpens."""
        if self.kind != "piecewise" or t < self.t3:
            return 1.0
        return self.sharpen ** (t - self.t3 + 1) if self.compound else self.sharpen

    def authors_epoch(self, epoch: int, max_epochs: int) -> float:
        """The authors' 1-based epoch τ for our 0-based ``epoch`` of a ``max_epochs`` run."""
        tau = epoch + 1.0
        return tau * self.reference_epochs / max_epochs if self.reference_epochs is not None else tau

    def authors_at(self, tau: float, num_classes: int) -> tuple:
        """(λ, sharpen power) reproducing the authors' Q at their epoch τ with K = ``num_classes``."""
        if tau <= self.t1:
            return 0.0, 1.0
        if tau <= self.t2:  # never reached when t2 <= t1
            return (tau - self.t1) / ((tau - self.t1) + num_classes * (self.t2 - tau)), 1.0
        return 1.0, (1.0 if tau <= self.t3 else self.sharpen)

    # -- Lightning hooks -----------------------------------------------------------------
    def _apply(self, pl_module: pl.LightningModule, lam: float, sharpen: float) -> None:
        head = pl_module.head
        head.lam = lam
        if self.kind in ("piecewise", "reot_authors"):
            if not hasattr(head.loss, "sharpen"):
                raise ValueError(f"{self.kind} schedule sharpens Q but loss '{head.loss_name}' has no 'sharpen'; "
                                 "use loss='reot'")
            head.loss.sharpen = sharpen
        self.last = {"lam": lam, "sharpen": sharpen}

    def _update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.kind == "reot_authors":
            tau = self.authors_epoch(trainer.current_epoch, trainer.max_epochs or 1)
            self._apply(pl_module, *self.authors_at(tau, pl_module.head.loss.num_classes))
        else:
            if self.interval == "epoch":
                t, horizon = trainer.current_epoch, (trainer.max_epochs or 1) - 1
            else:
                t, horizon = trainer.global_step, trainer.estimated_stepping_batches - 1
            self._apply(pl_module, self.lam_at(t, horizon), self.sharpen_at(t))
        on_step = self.interval == "step"
        pl_module.log("lam", self.last["lam"], on_step=on_step, on_epoch=not on_step)
        if self.kind in ("piecewise", "reot_authors"):
            pl_module.log("sharpen", self.last["sharpen"], on_step=on_step, on_epoch=not on_step)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after every setup hook: tasks build their head in LightningModule.setup (from the DataModule)
        if not hasattr(pl_module, "head"):
            raise ValueError("PriorSchedule needs pl_module.head to be a TransportHead")
        try:
            pl_module.head.lam
        except AttributeError as err:
            raise ValueError(f"PriorSchedule: {err}") from err

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.last:  # resumed: put the saved λ back before anything else runs
            self._apply(pl_module, self.last["lam"], self.last["sharpen"])

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._update(trainer, pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.interval == "step":
            self._update(trainer, pl_module)

    def state_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "interval": self.interval, **self.last}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if state_dict.get("kind") != self.kind or state_dict.get("interval") != self.interval:
            raise ValueError(f"checkpoint holds a '{state_dict.get('kind')}'/{state_dict.get('interval')} prior "
                             f"schedule but this run uses '{self.kind}'/{self.interval}; resume with the same schedule")
        if "lam" in state_dict:
            self.last = {"lam": float(state_dict["lam"]), "sharpen": float(state_dict.get("sharpen", 1.0))}
