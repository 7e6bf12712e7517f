"""Shared pieces of the classification losses: input checks, class-count checks, the base class."""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence, Union

import torch
from torch import nn

Counts = Union[Sequence[float], torch.Tensor]


def as_class_indices(targets, n: int, what: str = "targets") -> torch.Tensor:
    """``targets`` as a ``(n,)`` int64 tensor of class indices. Any integer dtype is accepted and cast up
    (``uint8`` included: cast, so it is never taken as a boolean mask when it indexes a tensor); bool, float
    and complex tensors, and non-tensors, raise."""
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"{what} must be a torch tensor of class indices; got {type(targets).__name__} "
                         f"(wrap it: torch.as_tensor({what}, dtype=torch.long))")
    if targets.dtype == torch.bool or targets.dtype.is_floating_point or targets.dtype.is_complex:
        raise ValueError(f"{what} must be integer class indices (e.g. torch.long); got dtype {targets.dtype}"
                         + ("" if targets.dtype == torch.bool else f"; cast with {what}.long() if they hold whole numbers"))
    if targets.dim() != 1 or targets.shape[0] != n:
        raise ValueError(f"{what} must have shape ({n},) to match the batch; got {tuple(targets.shape)}")
    return targets.long()


def check_logits_targets(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Raise ValueError unless ``logits`` is a (B, num_classes) float tensor and ``targets`` (B,) integer in
    [0, C); returns ``targets`` as int64 (every integer dtype gives the same loss)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        what = f"dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point torch tensor of shape (batch, {num_classes}); got {what}")
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (batch, {num_classes}); got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("empty batch: a loss needs at least one sample (a mean over 0 samples is NaN); "
                         "check the sampler / drop_last settings")
    if isinstance(targets, torch.Tensor) and (targets.dim() != 1 or targets.shape[0] != logits.shape[0]):
        raise ValueError(f"targets must have shape ({logits.shape[0]},) to match logits; got {tuple(targets.shape)}")
    targets = as_class_indices(targets, logits.shape[0])
    if targets.device != logits.device:
        raise ValueError(f"targets are on {targets.device} but logits on {logits.device}; move both to one device")
    lo, hi = torch.aminmax(targets)
    if int(lo) < 0 or int(hi) >= num_classes:
        raise ValueError(f"targets must lie in [0, {num_classes}); got values in [{int(lo)}, {int(hi)}]")
    return targets


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when its type is narrower (bfloat16, float16), else unchanged (float64 stays).

    Losses compute in at least float32: under mixed precision (``bf16-mixed``, ``16-mixed``) the model's
    logits arrive in bf16 / fp16, whose 8 / 11-bit mantissas round a log-prior (``log 5000`` ≈ 8.5 is kept
    to ±0.03) or an OT solve's potentials well beyond CE's own rounding. Autograd casts the gradient
    back to ``x``'s type.
    """
    return x.float() if x.is_floating_point() and torch.finfo(x.dtype).bits < 32 else x


def autocast_off(device: Union[torch.device, str]):
    """A context with autocast disabled on ``device``'s type (a no-op where it has no autocast).

    Inside an autocast region, matrix products (the solver's kernel-vector ``bmm``) run in bf16 / fp16
    even on float32 inputs; OT solves inside the losses are wrapped in this, on :func:`full_precision`
    inputs, so they run in float32.
    """
    kind = torch.device(device).type
    if torch.amp.is_autocast_available(kind):
        return torch.autocast(device_type=kind, enabled=False)
    return contextlib.nullcontext()


def as_counts(class_counts: Optional[Counts], num_classes: int, *, who: str, positive: bool = True) -> torch.Tensor:
    """Class counts as a float64 tensor of length ``num_classes``.

    ``positive=True`` (needed wherever a log or 1/n of the counts is taken) rejects zeros.
    """
    if class_counts is None:
        raise ValueError(f"{who} needs class_counts (training samples per class, length {num_classes}); "
                         "pass class_counts=[n_0, ..., n_{C-1}] (the DataModule exposes them)")
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() != num_classes:
        raise ValueError(f"{who}: class_counts has {counts.numel()} entries but num_classes={num_classes}")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"{who}: class_counts must be finite and non-negative; got {counts.tolist()}")
    if positive and (counts == 0).any():
        zero = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"{who}: class_counts has zeros at classes {zero}, but this loss takes log / 1/n of the "
                         "counts; drop those classes or give them a count >= 1")
    return counts


class ClassificationLoss(nn.Module):
    """Base of every registered loss: ``loss(logits (B,C), targets (B,)) -> scalar``.

    ``set_progress(epoch, max_epochs)`` is called by the head once per epoch; it is a no-op
    unless the loss changes over training (LDAM-DRW).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        self.num_classes = int(num_classes)

    @property
    def logit_scale(self) -> float:
        """The factor the loss applies to the logits before its softmax (LDAM: ``s``; RE-OT / DB-OT:
        ``1/τ``). Inference multiplies by it, so test-time scores are the probabilities the loss fitted."""
        return 1.0

    def set_progress(self, epoch: int, max_epochs: int) -> None:  # noqa: D401 - default no-op
        """Hook for losses that change with the epoch; the default does nothing."""

    def softmax_prior(self, train_prior: torch.Tensor) -> torch.Tensor:
        """The label prior that ``softmax(logits)`` of a model trained with this loss is calibrated to.

        Plain likelihood losses (CE, focal, DB-OT with the training ratio) fit the training
        prior π; balanced losses override this (Balanced Softmax: uniform). Test-time prior
        estimation (EM) and the class-aware bias start from it.
        """
        return train_prior

    def check(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Validate the inputs; returns ``targets`` as int64 (use it in place of the argument)."""
        return check_logits_targets(logits, targets, self.num_classes)

    def register_counts(self, name: str, values: torch.Tensor) -> None:
        """Keep a per-class vector (float64, cast to the logits' dtype at use) as a non-persistent
        buffer so it follows ``.to(device)``."""
        self.register_buffer(name, values.to(torch.float64), persistent=False)
