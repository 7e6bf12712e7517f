"""Contrastive losses on two augmented views: NT-Xent (SimCLR), SupCon and inverse RE-OT.

All three take projections ``z1, z2`` (N, d) of two views of the same N images and stack them
into ``Z`` (2N, d), L2-normalised, with similarities ``S = Z Zᵀ`` (cosine) and temperature
``τ``. Index ``i`` and ``p(i) = (i + N) mod 2N`` are the two views of one image; an anchor is
never paired with itself.

* NT-Xent:  ``L = mean_i −log softmax_{j≠i}(S_ij/τ)[p(i)]``.
* SupCon (Khosla et al. 2020, L_out): positives ``A(i) = {j≠i : y_j = y_i}``,
  ``L = mean_i −(1/|A(i)|) Σ_{p∈A(i)} log softmax_{j≠i}(S_ij/τ)[p]``.
* RE-OT contrastive (inverse RE-OT, RE-OT paper §4.1): cost ``C = 1 − S`` (cosine distance),
  ``eps = τ``, prior ``Q`` with ``Q_ii = 0``, row masses ``a_i = 1/(2N)``; the coupling ``P`` is
  the RE-OT plan in ``U(a)`` (closed form ``P_ij = a_i softmax_j(log Q_ij − C_ij/τ)``) or in
  ``U(a, a)`` (Sinkhorn, differentiated through its iterations). With a target coupling ``P̃``
  (rows summing to ``a``) the loss is ``L = −Σ_ij P̃_ij log(P_ij / a_i)``, which is
  ``KL(P̃ ‖ P)`` plus a constant independent of the network (zero for the instance target).
  Uniform ``Q`` with the instance target in ``U(a)`` is exactly NT-Xent; with the class target
  it is exactly SupCon.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from otcls.losses.base import Counts, as_class_indices, as_counts, autocast_off, full_precision
from otcls.losses.registry import LOSSES
from otcls.ot import solve

PRIORS = ("uniform", "class", "frequency")
TARGETS = ("instance", "class")
COUPLINGS = ("semi", "balanced")


def _check_views(z1: torch.Tensor, z2: torch.Tensor, labels: Optional[torch.Tensor], need_labels: bool,
                 num_classes: Optional[int] = None) -> Optional[torch.Tensor]:
    """Validate the two views and the labels; returns the labels as int64 (None stays None)."""
    if not isinstance(z1, torch.Tensor) or not isinstance(z2, torch.Tensor):
        raise ValueError(f"z1 and z2 must be torch tensors; got {type(z1).__name__} and {type(z2).__name__}")
    if not (z1.is_floating_point() and z2.is_floating_point()):
        raise ValueError(f"z1 and z2 must be floating-point embeddings; got dtypes {z1.dtype} and {z2.dtype}")
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both have shape (N, d) and match; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"a contrastive batch needs at least 2 images, got {z1.shape[0]}")
    if labels is None:
        if need_labels:
            raise ValueError("this contrastive loss needs class labels: call loss(z1, z2, labels) with labels of shape (N,)")
        return None
    if isinstance(labels, torch.Tensor) and labels.shape != (z1.shape[0],):
        raise ValueError(f"labels must have shape ({z1.shape[0]},) to match z1, got {tuple(labels.shape)}")
    labels = as_class_indices(labels, z1.shape[0], "labels")
    if num_classes is not None and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got values in [{int(labels.min())}, {int(labels.max())}]")
    return labels


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return temperature


def stacked_similarity(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``S`` (2N, 2N) of the stacked, L2-normalised views ``[z1; z2]``."""
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    return z @ z.T


def positive_index(n: int, device=None) -> torch.Tensor:
    """``p(i) = (i + n) mod 2n``: the other view of each of the 2n stacked samples."""
    return torch.arange(2 * n, device=device).roll(n)


def class_positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """``M_ij = [y_i = y_j and i ≠ j]`` over the 2N stacked views (labels repeated twice)."""
    y = torch.cat([labels, labels])
    same = y[:, None] == y[None, :]
    return same & ~torch.eye(len(y), dtype=torch.bool, device=y.device)


def _masked_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    return torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1)


def _mean_target_nll(log_prob: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """``mean_i −(1/|A(i)|) Σ_{j∈A(i)} log_prob_ij`` with ``A(i)`` the True entries of row i."""
    picked = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1)
    return -(picked / positives.sum(1)).mean()


class ContrastiveLoss(nn.Module):
    """Common interface: ``loss(z1, z2, labels=None) -> scalar``; ``lam`` in [0, 1] weighs the prior.

    ``lam`` (default 1: the full prior) is set each epoch by the λ(t) callback
    :class:`otcls.callbacks.prior_schedule.PriorSchedule`; losses without a prior ignore it.
    ``num_classes``, when given, bounds the labels (out-of-range labels raise). ``class_counts``
    (training images per class; needs ``num_classes``) completes the signature of
    :func:`otcls.losses.build_loss`; only the frequency prior of ``reot_contrastive`` uses it.
    """

    needs_labels = False

    def __init__(self, temperature: float = 0.1, num_classes: Optional[int] = None,
                 class_counts: Optional[Counts] = None) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = None if num_classes is None else int(num_classes)
        if class_counts is not None:
            if num_classes is None:
                raise ValueError("class_counts needs num_classes (the length of the counts vector)")
            counts = as_counts(class_counts, int(num_classes), who=type(self).__name__).float()
            self.register_buffer("class_counts", counts, persistent=False)
        else:
            self.class_counts = None
        self.lam = 1.0

    def check(self, z1: torch.Tensor, z2: torch.Tensor, labels: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Validate the inputs; returns ``labels`` as int64 (use it in place of the argument)."""
        return _check_views(z1, z2, labels, self.needs_labels, self.num_classes)


@LOSSES.register("nt_xent")
class NTXentLoss(ContrastiveLoss):
    """SimCLR's NT-Xent (normalised temperature-scaled cross-entropy); labels are ignored."""

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.check(z1, z2, None)
        logits = stacked_similarity(z1, z2) / self.temperature
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        return F.cross_entropy(logits.masked_fill(eye, float("-inf")), positive_index(z1.shape[0], z1.device))


@LOSSES.register("supcon")
class SupConLoss(ContrastiveLoss):
    """Supervised contrastive loss (L_out form): every other view of the same class is a positive."""

    needs_labels = True

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        labels = self.check(z1, z2, labels)
        log_prob = _masked_log_softmax(stacked_similarity(z1, z2) / self.temperature)
        return _mean_target_nll(log_prob, class_positive_mask(labels))


def contrastive_prior(kind: str, labels: Optional[torch.Tensor], n: int, *, q_same: float = 0.7,
                      q_diff: float = 0.3, class_counts: Optional[torch.Tensor] = None,
                      device=None, dtype=torch.float32) -> torch.Tensor:
    """Row-stochastic prior ``r`` (2N, 2N) over pairs of stacked views, zero on the diagonal.

    * ``uniform``: ``r_ij ∝ 1``.
    * ``class``: ``r_ij ∝ q_same`` if ``y_i = y_j`` else ``q_diff`` (RE-OT paper, Fig. 1).
    * ``frequency``: ``r_ij ∝ 1 / c_i(y_j)`` with ``c_i(k) = #{l ≠ i : y_l = k}``: every class
      present in the batch gets the same prior mass, split among its samples, so head classes do
      not dominate the coupling of a long-tailed batch (class-averaged contrast). With
      ``class_counts`` (training images per class, ``n_k``) it is ``r_ij ∝ 1 / n_{y_j}`` instead.
    """
    if kind not in PRIORS:
        raise ValueError(f"unknown contrastive prior '{kind}'; choose one of {PRIORS}")
    eye = torch.eye(2 * n, dtype=torch.bool, device=device)
    if kind == "uniform":
        r = torch.ones(2 * n, 2 * n, device=device, dtype=dtype)
    else:
        if labels is None:
            raise ValueError(f"the '{kind}' prior needs class labels; pass labels or use prior='uniform'")
        same = class_positive_mask(labels) | eye
        if kind == "class":
            if not (q_same > 0 and q_diff > 0):
                raise ValueError(f"q_same and q_diff must be > 0, got {q_same} and {q_diff}")
            r = torch.where(same, torch.tensor(q_same, dtype=dtype, device=device),
                            torch.tensor(q_diff, dtype=dtype, device=device))
        else:
            if class_counts is not None:
                counts = class_counts.to(device=device, dtype=dtype)[torch.cat([labels, labels])][None, :]
            else:
                counts = same.to(dtype).sum(1, keepdim=True).T - same.to(dtype)  # c_i(y_j), excluding i
            r = (1.0 / counts.masked_fill(eye, 1.0)).expand(2 * n, 2 * n)
    r = r.masked_fill(eye, 0.0)
    return r / r.sum(1, keepdim=True)


@LOSSES.register("reot_contrastive")
class REOTContrastiveLoss(ContrastiveLoss):
    """Inverse RE-OT contrastive loss (see module docstring for the math).

    ``Q = (1 − lam)·uniform + lam·r`` with ``r`` from :func:`contrastive_prior`; ``lam`` follows
    λ(t). ``coupling='semi'`` solves in ``U(a)`` (closed form), ``'balanced'`` in ``U(a, a)`` with
    ``sinkhorn_iters`` differentiable log-domain Sinkhorn iterations. ``target='instance'``
    matches each view to its other view (SimCLR), ``'class'`` spreads each row over the other
    views of its class (SupCon). ``class_counts`` switches the frequency prior from batch
    counts to training-set counts.
    """

    def __init__(self, temperature: float = 0.1, prior: str = "frequency", target: str = "class",
                 coupling: str = "semi", q_same: float = 0.7, q_diff: float = 0.3,
                 sinkhorn_iters: int = 20, num_classes: Optional[int] = None,
                 class_counts: Optional[Counts] = None) -> None:
        super().__init__(temperature, num_classes, class_counts)
        for name, value, allowed in (("prior", prior, PRIORS), ("target", target, TARGETS),
                                     ("coupling", coupling, COUPLINGS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} '{value}' for the RE-OT contrastive loss; choose one of {allowed}")
        if int(sinkhorn_iters) < 1:
            raise ValueError(f"sinkhorn_iters must be >= 1, got {sinkhorn_iters}")
        self.prior, self.target, self.coupling = prior, target, coupling
        self.q_same, self.q_diff = float(q_same), float(q_diff)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.needs_labels = prior != "uniform" or target == "class"

    def prior_matrix(self, labels: Optional[torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
        """``Q = (1 − lam)·uniform + lam·r`` (2N, 2N), zero diagonal."""
        kw = dict(q_same=self.q_same, q_diff=self.q_diff, class_counts=self.class_counts,
                  device=like.device, dtype=like.dtype)
        uniform = contrastive_prior("uniform", None, n, **kw)
        if self.prior == "uniform":
            return uniform
        lam = float(self.lam)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        return (1.0 - lam) * uniform + lam * contrastive_prior(self.prior, labels, n, **kw)

    def log_coupling(self, z1: torch.Tensor, z2: torch.Tensor,
                     labels: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(log P, a)``: the RE-OT coupling between the 2N stacked views, in the log domain; solved in
        float32 or wider with autocast off (bf16 / fp16 projections are cast up, as in the classification losses)."""
        n = z1.shape[0]
        with autocast_off(z1.device):
            cost = 1.0 - stacked_similarity(full_precision(z1), full_precision(z2))
            prior = self.prior_matrix(labels, n, cost)
            a = torch.full((2 * n,), 1.0 / (2 * n), dtype=cost.dtype, device=cost.device)
            if self.coupling == "semi":
                res = solve(cost, a, eps=self.temperature, prior=prior)
            else:
                res = solve(cost, a, a, eps=self.temperature, prior=prior, tol=None,
                            max_iter=self.sinkhorn_iters, grad="autodiff")
            log_p = torch.log(prior) + (res.f[:, None] + res.g[None, :] - cost) / self.temperature
        return log_p, a

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        labels = self.check(z1, z2, labels)
        n = z1.shape[0]
        log_p, a = self.log_coupling(z1, z2, labels)
        log_row = log_p - torch.log(a)[:, None]  # log(P_ij / a_i)
        if self.target == "instance":
            positives = torch.zeros_like(log_row, dtype=torch.bool)
            positives[torch.arange(2 * n, device=z1.device), positive_index(n, z1.device)] = True
        else:
            positives = class_positive_mask(labels)
        # P̃_ij = a_i [j ∈ A(i)] / |A(i)| and Σ_i a_i = 1, so −Σ P̃ log(P/a) is a row mean.
        return _mean_target_nll(log_row, positives)
