"""Long-tail baseline losses, each its published formula (mean over the batch).

p = softmax(z), y the target, n_j the training count of class j, π_j = n_j / Σ n.
Each computes in at least float32 (bf16 / fp16 logits are cast up, see :func:`~otcls.losses.base.full_precision`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from otcls.losses.base import ClassificationLoss, Counts, as_counts, full_precision
from otcls.losses.registry import LOSSES


def reweighted_prior(train_prior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighting class j's loss by w_j makes softmax(z) ∝ w_j·p(y|x): the calibration prior π·w, normalised."""
    q = train_prior * weights.to(train_prior)
    return q / q.sum()


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (2019): w_j = (1-β)/(1-β^{n_j}), rescaled so Σ_j w_j = C."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must lie in [0, 1); got {beta}")
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return w * (counts.numel() / w.sum())


@LOSSES.register("ce")
class CrossEntropy(ClassificationLoss):
    """Softmax cross-entropy: -log p_y."""

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None) -> None:
        super().__init__(num_classes)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        return F.cross_entropy(logits, targets)


@LOSSES.register("focal")
class FocalLoss(ClassificationLoss):
    """Focal loss (Lin et al., 2017): -(1 - p_y)^γ log p_y."""

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, gamma: float = 2.0) -> None:
        super().__init__(num_classes)
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0; got {gamma}")
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        logp_y = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        return (-(1.0 - logp_y.exp()).pow(self.gamma) * logp_y).mean()


@LOSSES.register("ldam")
class LDAMLoss(ClassificationLoss):
    """LDAM (Cao et al., 2019) with optional Deferred Re-Weighting.

    Loss: CE(s·(z - Δ_y e_y)) with margins Δ_j = m_max · n_j^{-1/4} / max_k n_k^{-1/4}.
    Expects cosine logits in [-1, 1] (head ``classifier: cosine, scale: 1``), as in the paper.
    DRW: from epoch ``drw_start`` on (a value < 1 is a fraction of ``max_epochs``; None = never)
    each sample is weighted by the class-balanced weight w_y (β = ``drw_beta``), using the
    weighted mean Σ w_{y_i} L_i / Σ w_{y_i} of the reference implementation.
    """

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, max_margin: float = 0.5,
                 s: float = 30.0, drw_start: Optional[float] = 0.8, drw_beta: float = 0.9999) -> None:
        super().__init__(num_classes)
        counts = as_counts(class_counts, num_classes, who="ldam")
        if max_margin <= 0 or s <= 0:
            raise ValueError(f"ldam needs max_margin > 0 and s > 0; got max_margin={max_margin}, s={s}")
        if drw_start is not None and drw_start < 0:
            raise ValueError(f"ldam drw_start must be >= 0 (epoch, or fraction < 1 of max_epochs) or None; got {drw_start}")
        m = counts.pow(-0.25)
        self.register_counts("margins", m * (max_margin / m.max()))
        self.register_counts("drw_weights", effective_number_weights(counts, drw_beta))
        self.s = float(s)
        self.drw_start = drw_start
        self.drw_active = False

    @property
    def logit_scale(self) -> float:
        return self.s

    def set_progress(self, epoch: int, max_epochs: int) -> None:
        """Turn DRW on once ``epoch >= drw_start`` (fractions are scaled by ``max_epochs``)."""
        if self.drw_start is None:
            self.drw_active = False
            return
        start = self.drw_start * max_epochs if self.drw_start < 1 else self.drw_start
        self.drw_active = epoch >= start

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """With DRW on, class j is weighted by w_j: calibrated to π·w (approximately; margins ignored)."""
        return reweighted_prior(train_prior, self.drw_weights) if self.drw_active else train_prior

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        margin = self.margins.to(logits.dtype)[targets]
        adjusted = logits - F.one_hot(targets, self.num_classes).to(logits.dtype) * margin[:, None]
        weight = self.drw_weights.to(logits.dtype) if self.drw_active else None
        return F.cross_entropy(self.s * adjusted, targets, weight=weight)


@LOSSES.register("logit_adjust")
class LogitAdjustedLoss(ClassificationLoss):
    """Logit-adjusted loss (Menon et al., 2021): CE(z + τ·log π).

    The sign is **plus** during training (the post-hoc correction at test time subtracts τ·log π).
    """

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, tau: float = 1.0) -> None:
        super().__init__(num_classes)
        counts = as_counts(class_counts, num_classes, who="logit_adjust")
        self.register_counts("log_prior", (counts / counts.sum()).log())
        self.tau = float(tau)

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """softmax(z) ∝ p(y|x) / π^τ: calibrated to π^(1-τ) (uniform at τ = 1)."""
        q = train_prior.pow(1.0 - self.tau)
        return q / q.sum()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), targets)


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(ClassificationLoss):
    """Balanced Softmax (Ren et al., 2020): -log( n_y e^{z_y} / Σ_j n_j e^{z_j} ) = CE(z + log n)."""

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None) -> None:
        super().__init__(num_classes)
        self.register_counts("log_counts", as_counts(class_counts, num_classes, who="balanced_softmax").log())

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """softmax(z) ∝ p(y|x) / π: calibrated to the uniform prior."""
        return torch.full_like(train_prior, 1.0 / train_prior.numel())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        return F.cross_entropy(logits + self.log_counts.to(logits.dtype), targets)


@LOSSES.register("cb_ce")
class ClassBalancedCE(ClassificationLoss):
    """Class-balanced softmax CE (Cui et al., 2019): (1/B) Σ_i w_{y_i} · (-log p_{y_i}),
    w_j = (1-β)/(1-β^{n_j}) normalised to Σ_j w_j = C."""

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, beta: float = 0.9999) -> None:
        super().__init__(num_classes)
        counts = as_counts(class_counts, num_classes, who="cb_ce")
        self.register_counts("weights", effective_number_weights(counts, beta))

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """Calibrated to π·w (≈ uniform for β → 1), see :func:`reweighted_prior`."""
        return reweighted_prior(train_prior, self.weights)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        nll = F.cross_entropy(logits, targets, reduction="none")
        return (self.weights.to(logits.dtype)[targets] * nll).mean()


@LOSSES.register("cb_focal")
class ClassBalancedFocal(ClassificationLoss):
    """Class-balanced sigmoid focal loss (Cui et al., 2019, eq. 6):
    (1/B) Σ_i w_{y_i} Σ_j -(1 - p^t_ij)^γ log p^t_ij, p^t_ij = σ(z_ij) if j = y_i else σ(-z_ij)."""

    def __init__(self, num_classes: int, class_counts: Optional[Counts] = None, beta: float = 0.9999,
                 gamma: float = 2.0) -> None:
        super().__init__(num_classes)
        if gamma < 0:
            raise ValueError(f"cb_focal gamma must be >= 0; got {gamma}")
        counts = as_counts(class_counts, num_classes, who="cb_focal")
        self.register_counts("weights", effective_number_weights(counts, beta))
        self.gamma = float(gamma)

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """Calibrated to π·w (≈ uniform for β → 1), see :func:`reweighted_prior`."""
        return reweighted_prior(train_prior, self.weights)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = self.check(logits, targets)
        logits = full_precision(logits)
        sign = 2.0 * F.one_hot(targets, self.num_classes).to(logits.dtype) - 1.0
        log_pt = F.logsigmoid(sign * logits)
        focal = -(1.0 - log_pt.exp()).pow(self.gamma) * log_pt
        return (self.weights.to(logits.dtype)[targets] * focal.sum(1)).mean()
