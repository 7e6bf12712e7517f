"""RE-OT loss: inverse relative-entropic OT over the semi-relaxed set U(a) (Shi et al., 2023)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from otcls.losses.base import ClassificationLoss, Counts, as_counts, autocast_off, full_precision
from otcls.losses.registry import LOSSES

PRIOR_KINDS = ("ratio", "batch", "mix", "teacher")


@LOSSES.register("reot")
class REOTLoss(ClassificationLoss):
    """Cross-entropy on ``z/τ + log Q`` with ``Q = (1-λ)·Uniform + λ·r``.

    With cost C = c - z, eps = τ and the label plan P~ (one-hot rows), inverse RE-OT over
    U(a) gives exactly this loss. ``r`` (``prior=``):

    - ``ratio``: training class ratio n_j / Σ n (``class_counts`` required);
    - ``batch``: the batch's label ratio;
    - ``mix``: ``mix·ratio + (1-mix)·batch``;
    - ``teacher``: per-sample teacher probabilities, passed as ``loss(z, y, teacher_probs=T)``.

    Special cases (tested in float64): λ = 0 is softmax CE; ``prior=ratio``, λ = 1, τ = 1 is
    Balanced Softmax. ``sharpen = p`` replaces Q by Q^p / Σ_j Q^p (the RE-OT authors' late
    phase uses p = 1.03); ``sinkhorn=True`` replaces Q by its Sinkhorn scaling Q~ onto
    U(1/B, n/Σn). ``lam`` and ``sharpen`` are plain attributes a schedule may set.
    """

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, tau: float = 1.0,
                 prior: str = "ratio", lam: float = 1.0, mix: float = 0.5, sharpen: float = 1.0,
                 sinkhorn: bool = False) -> None:
        super().__init__(num_classes)
        if prior not in PRIOR_KINDS:
            raise ValueError(f"reot prior must be one of {', '.join(PRIOR_KINDS)}; got '{prior}'")
        if tau <= 0:
            raise ValueError(f"reot tau must be > 0; got {tau}")
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"reot mix must lie in [0, 1]; got {mix}")
        needs_counts = prior in ("ratio", "mix") or sinkhorn
        if needs_counts or class_counts is not None:
            counts = as_counts(class_counts, num_classes, who=f"reot (prior={prior}, sinkhorn={sinkhorn})")
            self.register_counts("ratio", counts / counts.sum())
        else:
            self.ratio = None
        self.tau = float(tau)
        self.prior = prior
        self.mix = float(mix)
        self.sinkhorn = bool(sinkhorn)
        self.lam = lam
        self.sharpen = sharpen

    @property
    def lam(self) -> float:
        """λ in Q = (1-λ)·Uniform + λ·r, within [0, 1]."""
        return self._lam

    @lam.setter
    def lam(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"reot lam (λ) must lie in [0, 1]; got {value}")
        self._lam = value

    @property
    def sharpen(self) -> float:
        """Power p in Q ← Q^p / Σ_j Q^p (1 = no sharpening)."""
        return self._sharpen

    @sharpen.setter
    def sharpen(self, value: float) -> None:
        if float(value) <= 0:
            raise ValueError(f"reot sharpen power must be > 0; got {value}")
        self._sharpen = float(value)

    @property
    def logit_scale(self) -> float:
        return 1.0 / self.tau

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """CE(z/τ + log Q) fits softmax(z/τ) ∝ p(y|x) / Q: calibrated to π / Q̄, Q̄ the expected prior
        (the batch, mix and teacher ratios average to π); uniform at λ = 1."""
        q_bar = (1.0 - self.lam) / self.num_classes + self.lam * train_prior
        if self.sharpen != 1.0:
            q_bar = q_bar.pow(self.sharpen)
            q_bar = q_bar / q_bar.sum()
        q = train_prior / q_bar
        return q / q.sum()

    def _r(self, targets: torch.Tensor, teacher_probs: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        if self.prior == "teacher":
            if teacher_probs is None:
                raise ValueError("reot prior='teacher' needs loss(logits, targets, teacher_probs=...) with the "
                                 "teacher's softmax outputs for this batch, shape (batch, num_classes)")
            if teacher_probs.shape != like.shape:
                raise ValueError(f"teacher_probs must have shape {tuple(like.shape)}; got {tuple(teacher_probs.shape)}")
            return teacher_probs.to(like.dtype)
        batch = torch.bincount(targets, minlength=self.num_classes).to(like.dtype) / targets.numel()
        if self.prior == "batch":
            return batch
        ratio = self.ratio.to(like.dtype)
        return ratio if self.prior == "ratio" else self.mix * ratio + (1.0 - self.mix) * batch

    def log_prior(self, logits: torch.Tensor, targets: torch.Tensor,
                  teacher_probs: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log Q, broadcastable to ``logits`` ((C,) or (B, C)); float32 for bf16 / fp16 logits."""
        logits = full_precision(logits)
        q = (1.0 - self.lam) / self.num_classes + self.lam * self._r(targets, teacher_probs, logits)
        if self.sharpen != 1.0:
            q = q.pow(self.sharpen)
            q = q / q.sum(-1, keepdim=True)
        if self.sinkhorn:
            from otcls.ot import scale_prior

            b = logits.shape[0]
            # float32 cannot meet scale_prior's default tol 1e-9 (its marginals stall near 3e-8)
            tol = 1e-9 if logits.dtype == torch.float64 else 1e-6
            with autocast_off(logits.device):
                q = scale_prior(q.expand_as(logits), torch.full((b,), 1.0 / b, dtype=logits.dtype, device=logits.device),
                                self.ratio.to(logits.dtype), tol=tol)
        return q.log()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                teacher_probs: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss, in float32 for bf16 / fp16 logits (as ``F.cross_entropy`` under autocast)."""
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        return F.cross_entropy(logits / self.tau + self.log_prior(logits, targets, teacher_probs), targets)
