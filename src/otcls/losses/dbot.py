"""DB-OT loss: inverse double-bounded OT on the batch (Shi et al., 2024)."""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from otcls.losses.base import ClassificationLoss, Counts, as_counts, autocast_off, full_precision
from otcls.losses.registry import LOSSES

RATIO_KINDS = ("train", "batch")


@LOSSES.register("dbot")
class DBOTLoss(ClassificationLoss):
    """KL(P~ | P) between the label plan and the batch's DB-OT plan.

    P~_ij = [y_i = j] / B. P solves min <C,P> + τ·KL~(P|Q) with C = -z, rows P1 = 1/B and
    columns (1-δ)·r ≤ Pᵀ1 ≤ (1+δ)·r (lower bound clipped at 0), by ``iters`` iterations of the
    exact DB-OT dual ascent started from g = 0, differentiated through the iterations.
    ``r`` is the training class ratio (``ratio="train"``, the paper's setting and the default) or
    the batch label ratio (``"batch"``): classes absent from the batch then get zero mass and no
    gradient, and a batch of a single class would give loss 0 with zero gradient, so such a
    batch falls back to the training ratio with a warning (or raises without ``class_counts``).
    ``prior="counts"`` sets
    Q_ij = n_j / Σ n, otherwise Q = 1. ``delta=None`` drops the column bounds.

    KL~(P~|P) = Σ P~ log(P~/P) - Σ P~ + Σ P, evaluated with log P from the dual potentials.
    ``otcls.ot`` ends on the row scaling, so P1 = 1/B exactly and the loss is
    CE(z/τ + log Q + g/τ): cross-entropy with a batch-fitted class offset g (the column dual).

    Reduction to Balanced Softmax: when the column bounds never bind — ``delta=None``, or any
    δ ≥ max(1, 1/min_j r_j - 1) since every column sum lies in [0, 1] — the ascent keeps g = 0,
    P_ij = softmax(z_i/τ + log Q_i)_j / B, and the loss equals CE(z/τ + log Q): softmax CE with
    Q = 1 and Balanced Softmax with ``prior="counts"``, τ = 1. Binding bounds (e.g. δ = 0)
    give a different, batch-coupled loss.
    """

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, tau: float = 1.0,
                 delta: Optional[float] = 0.2, iters: int = 3, ratio: str = "train", prior: str = "none") -> None:
        super().__init__(num_classes)
        if ratio not in RATIO_KINDS:
            raise ValueError(f"dbot ratio must be one of {', '.join(RATIO_KINDS)}; got '{ratio}'")
        if prior not in ("none", "counts"):
            raise ValueError(f"dbot prior must be 'none' or 'counts'; got '{prior}'")
        if tau <= 0:
            raise ValueError(f"dbot tau must be > 0; got {tau}")
        if delta is not None and delta < 0:
            raise ValueError(f"dbot delta (bound rate) must be >= 0 or None; got {delta}")
        if int(iters) < 1:
            raise ValueError(f"dbot iters must be >= 1; got {iters}")
        if ratio == "train" or prior == "counts" or class_counts is not None:
            counts = as_counts(class_counts, num_classes, who=f"dbot (ratio={ratio}, prior={prior})")
            self.register_counts("ratio", counts / counts.sum())
        else:
            self.ratio = None
        self.single_class_fallbacks = 0
        self.tau, self.delta, self.iters = float(tau), delta, int(iters)
        self.ratio_kind, self.prior = ratio, prior

    @property
    def logit_scale(self) -> float:
        return 1.0 / self.tau

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """With ``prior="counts"`` the plan carries the factor n_j (Balanced Softmax in the limit of
        non-binding bounds), so softmax(z) is calibrated to the uniform prior; without it, to π."""
        if self.prior == "counts":
            return torch.full_like(train_prior, 1.0 / train_prior.numel())
        return train_prior

    def plan(self, logits: torch.Tensor, targets: torch.Tensor):
        """Solve the batch DB-OT problem; returns (OTResult, kept class indices). The solve runs in float32
        or wider, with autocast off: bf16 / fp16 logits are cast up (the plan and potentials are float32)."""
        from otcls.ot import solve

        _check_finite_logits(logits)
        logits = full_precision(logits)
        b = logits.shape[0]
        keep = torch.arange(self.num_classes, device=logits.device)
        use_batch = self.ratio_kind == "batch"
        if use_batch:
            r = torch.bincount(targets, minlength=self.num_classes).to(logits.dtype) / b
            keep = torch.nonzero(r > 0).flatten()
            if keep.numel() < 2 and self.num_classes > 1:
                if self.ratio is None:
                    raise ValueError("dbot ratio='batch' on a batch with a single class gives loss 0 and no gradient; "
                                     "use ratio='train' (the paper's setting) or pass class_counts for a fallback")
                self.single_class_fallbacks += 1
                if self.single_class_fallbacks == 1:
                    warnings.warn("dbot ratio='batch': a batch holds a single class (loss 0, no gradient under the batch "
                                  "ratio); using the training ratio for such batches", RuntimeWarning, stacklevel=2)
                use_batch = False
                keep = torch.arange(self.num_classes, device=logits.device)
            else:
                r = r[keep]
        if not use_batch:
            r = self.ratio.to(logits.dtype)
        z = logits[:, keep]
        prior = None
        if self.prior == "counts":
            prior = self.ratio.to(logits.dtype)[keep].expand_as(z)
        a = torch.full((b,), 1.0 / b, dtype=logits.dtype, device=logits.device)
        lower = upper = None
        if self.delta is not None:
            lower = ((1.0 - self.delta) * r).clamp_min(0.0)
            upper = (1.0 + self.delta) * r
        with autocast_off(logits.device):
            res = solve(-z, a, eps=self.tau, prior=prior, lower=lower, upper=upper,
                        tol=None, max_iter=self.iters, grad="autodiff")
        return res, keep

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss, in float32 for bf16 / fp16 logits (as ``F.cross_entropy`` under autocast)."""
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        res, keep = self.plan(logits, targets)
        col = torch.full((self.num_classes,), -1, dtype=torch.long, device=logits.device)
        col[keep] = torch.arange(keep.numel(), device=logits.device)
        t = col[targets]
        rows = torch.arange(logits.shape[0], device=logits.device)
        log_q = 0.0
        if self.prior == "counts":
            log_q = self.ratio.to(logits.dtype).log()[targets]
        log_p = log_q + (res.f[rows] + res.g[t] + logits[rows, keep[t]]) / self.tau
        b = logits.shape[0]
        return (-torch.log(torch.tensor(float(b), dtype=logits.dtype)) - log_p).mean() - 1.0 + res.plan.sum()


def _check_finite_logits(logits: torch.Tensor) -> None:
    """The DB-OT plan's cost is ``-logits``, which the solver needs finite: name the logits at fault."""
    bad = ~torch.isfinite(logits.detach())
    if not bool(bad.any()):
        return
    vals = logits.detach()[bad]
    kinds = [name for name, hit in (("-inf", bool((vals == -torch.inf).any())), ("+inf", bool((vals == torch.inf).any())),
                                    ("NaN", bool(torch.isnan(vals).any()))) if hit]
    rows = torch.nonzero(bad.any(1)).flatten().tolist()
    raise ValueError(f"dbot: {int(bad.sum())} logit(s) are {'/'.join(kinds)} (in {len(rows)} of {logits.shape[0]} rows, "
                     f"first rows {rows[:5]}); the DB-OT loss transports on the cost -logits and needs every logit "
                     "finite. A -inf logit used to mask a class cannot enter it: clamp the logits "
                     "(e.g. logits.clamp_min(-1e4)) or drop the class; NaN/inf logits mean the model diverged "
                     "(lower the learning rate)")
