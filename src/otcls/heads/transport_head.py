"""TransportHead: the classifier layer, the training loss by name, and test-time (OT) inference."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
from torch import nn

from otcls.inference.priors import PriorSpec, resolve_prior
from otcls.inference.scores import MODES, STREAM_MODES, check_logits, ot_scores
from otcls.heads.classifiers import build_classifier
from otcls.losses import build_loss
from otcls.losses.base import Counts, as_counts


class TransportHead(nn.Module):
    """Classifier + loss + inference, used the same way by every task.

    ``head(features) -> logits``; ``head.compute_loss(logits, targets)``; ``head.lam`` forwards
    to the loss (RE-OT's λ); ``head.predict(logits, mode=..., test_prior=...)``.

    Inference modes (``MODES``): ``softmax``; ``tau_norm`` (Kang et al., 2020: logits
    recomputed with w_j/||w_j||^τ); ``class_bias`` (post-hoc logit adjustment,
    z - τ·log π_s + τ·log b, π_s the prior the loss calibrates softmax to); ``reot`` (coupling in U(1/n, b), Sinkhorn) and ``dbot``
    (rows 1/n, columns in bounds around b: by default the binomial interval of a coupling of n rows'
    class shares, ``delta="binomial"``; or ``[(1-δ)b, (1+δ)b]`` for a number δ), both with cost -z and
    regulariser ``eps``, over the logits passed in (one batch, or the whole set via
    :func:`otcls.inference.whole_set_predict`); ``reot_stream`` / ``dbot_stream`` (the batches of
    ``batch_size`` served in turn, class potentials carried across them, converging to the whole-set
    coupling: :mod:`otcls.inference.streaming`). ``b`` is ``test_prior``: ``train``,
    ``uniform``, ``reverse``, ``estimated`` (EM, Saerens et al. 2002; online EM for the stream modes) or a vector.
    """

    def __init__(self, in_features: int, num_classes: int, *, loss: str = "ce",
                 loss_kwargs: Optional[Dict[str, Any]] = None, class_counts: Optional[Counts] = None,
                 classifier: str = "linear", scale: float = 16.0) -> None:
        super().__init__()
        if int(in_features) < 1 or int(num_classes) < 1:
            raise ValueError(f"in_features and num_classes must be >= 1; got {in_features}, {num_classes}")
        self.num_classes = int(num_classes)
        self.classifier = build_classifier(classifier, int(in_features), self.num_classes, scale)
        self.loss_name = loss
        self.loss = build_loss(loss, num_classes=self.num_classes, class_counts=class_counts, **(loss_kwargs or {}))
        counts = None if class_counts is None else as_counts(class_counts, self.num_classes, who="TransportHead",
                                                             positive=False)
        self.register_buffer("class_counts", counts, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def compute_loss(self, logits: torch.Tensor, targets: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The training loss; extra keywords (e.g. ``teacher_probs``) go to the loss. Not checked for
        finiteness here (that would synchronise with the device every step): ``otcls fit`` runs
        :class:`~otcls.callbacks.FiniteLossGuard`, which stops a non-finite run on logging steps."""
        return self.loss(logits, targets, **kwargs)

    @property
    def lam(self) -> float:
        """λ of the loss's prior mix (RE-OT)."""
        if not hasattr(self.loss, "lam"):
            raise AttributeError(f"loss '{self.loss_name}' has no λ (lam); use loss='reot' for a λ(t) schedule")
        return self.loss.lam

    @lam.setter
    def lam(self, value: float) -> None:
        if not hasattr(self.loss, "lam"):
            raise AttributeError(f"loss '{self.loss_name}' has no λ (lam); use loss='reot' for a λ(t) schedule")
        self.loss.lam = value

    def set_progress(self, epoch: int, max_epochs: int) -> None:
        """Tell the loss where training is (LDAM-DRW switches its weights with this)."""
        self.loss.set_progress(epoch, max_epochs)

    def calibrated_prior(self, source_prior: Optional[PriorSpec] = None) -> torch.Tensor:
        """The prior ``softmax(logits)`` assumes (float64): ``source_prior`` if given, else the loss's
        :meth:`~otcls.losses.base.ClassificationLoss.softmax_prior` of the training prior (CE: the
        training prior; Balanced Softmax: uniform), uniform without class counts."""
        counts = None if self.class_counts is None else self.class_counts.double()
        if source_prior is not None:
            return resolve_prior(source_prior, self.num_classes, class_counts=counts).double()
        if counts is None:
            return torch.full((self.num_classes,), 1.0 / self.num_classes, dtype=torch.float64)
        if (counts == 0).any():
            zero = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"classes {zero} have no training samples (class_counts {counts.long().tolist()}), so the "
                             "prior softmax is calibrated to is 0 there and class_bias / EM estimation would divide by "
                             "it; pass source_prior=... explicitly or train with every class present")
        return self.loss.softmax_prior(counts / counts.sum()).double().cpu()

    def calibrated_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` times the loss's :attr:`~otcls.losses.base.ClassificationLoss.logit_scale`: the
        logits whose softmax the loss fitted (a cosine classifier trained with LDAM's ``s = 30`` would
        otherwise give near-uniform probabilities)."""
        scale = self.loss.logit_scale
        return logits if scale == 1.0 else logits * scale

    def _prior(self, spec: PriorSpec, logits: torch.Tensor, source_prior: Optional[PriorSpec]) -> torch.Tensor:
        counts = None if self.class_counts is None else self.class_counts.double()
        probs = logits.detach().double().softmax(-1) if spec == "estimated" else None
        source = self.calibrated_prior(source_prior) if spec == "estimated" else None
        return resolve_prior(spec, self.num_classes, class_counts=counts, probs=probs,
                             source_prior=source).to(logits)

    def predict_scores(self, logits: torch.Tensor, mode: str = "softmax", test_prior: PriorSpec = "uniform", *,
                       eps: float = 1.0, delta: Any = "binomial", level: float = 0.95, tau: float = 1.0,
                       source_prior: Optional[PriorSpec] = None, tol: Optional[float] = 1e-4,
                       max_iter: int = 5000, batch_size: Optional[int] = None, seed: int = 0,
                       stream_step: float = 1.0, passes: int = 1) -> torch.Tensor:
        """(n, C) class scores whose rows sum to 1 (probabilities / row-normalised coupling), computed
        from :meth:`calibrated_logits` (the raw logits times the loss's logit scale).

        ``tau`` is the τ of ``tau_norm`` and ``class_bias``; ``source_prior`` is the prior the
        softmax of these logits assumes, used by ``class_bias`` and ``estimated`` (default:
        :meth:`calibrated_prior`, which follows the training loss). ``batch_size`` / ``seed``:
        OT inference per random batch of that size instead of over all rows (see
        :func:`otcls.inference.ot_scores`). ``delta`` / ``level``: DB-OT column bounds (``"binomial"`` at
        ``level``, sized from the coupling's number of rows; or a number δ). ``stream_step`` / ``passes``:
        step rule ``η0`` and replays of the stream modes.

        Every mode needs finite logits (NaN / inf rows raise, naming how many). OT modes: bfloat16 / float16
        logits are coupled, and scored, in float32; a set (or last batch) of fewer rows than classes is too
        small for a coupling and follows the rule of :func:`otcls.inference.ot_scores` (merged with the batch
        before it, or scored by the prior shift ``softmax(z + log b - log pi_s)`` with a
        :class:`~otcls.inference.scores.SmallCouplingWarning`; ``pi_s`` is :meth:`calibrated_prior`).
        """
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"unknown inference mode {mode!r}; choose one of: {', '.join(MODES)}")
        if isinstance(logits, torch.Tensor) and (logits.dim() != 2 or logits.shape[1] != self.num_classes):
            raise ValueError(f"logits must have shape (n, {self.num_classes}); got {tuple(logits.shape)}")
        check_logits(logits)
        if mode in ("tau_norm", "class_bias") and (isinstance(tau, (bool, str)) or not _is_finite_number(tau)):
            raise ValueError(f"tau ({mode}) must be a finite number; got {tau!r}")
        if mode == "tau_norm":
            weight = self.classifier.weight
            bias = 0.0 if self.classifier.bias is None else self.classifier.bias
            return self.calibrated_logits((logits - bias) / weight.norm(dim=1).pow(tau)).softmax(-1)
        if mode in ("reot", "dbot", *STREAM_MODES) and torch.finfo(logits.dtype).bits < 32:
            logits = logits.float()  # the coupling (and the prior b it must meet) in float32, not bf16 / fp16
        logits = self.calibrated_logits(logits)
        if mode == "softmax":
            return logits.softmax(-1)
        if mode in STREAM_MODES and isinstance(test_prior, str) and test_prior == "estimated":
            prior = None  # estimated on the stream (online EM), not on the whole set the stream never holds
        else:
            prior = self._prior(test_prior, logits, source_prior)
        if mode == "class_bias":
            source = self.calibrated_prior(source_prior).to(logits)
            return (logits - tau * source.log() + tau * prior.log()).softmax(-1)
        return ot_scores(logits, prior, mode=mode, eps=eps, delta=delta, level=level, tol=tol, max_iter=max_iter,
                         batch_size=batch_size, seed=seed, source_prior=lambda: self.calibrated_prior(source_prior),
                         stream_step=stream_step, passes=passes)

    @torch.no_grad()
    def predict(self, logits: torch.Tensor, mode: str = "softmax", test_prior: PriorSpec = "uniform",
                **kwargs: Any) -> torch.Tensor:
        """Predicted class per row: ``argmax_j`` of :meth:`predict_scores`."""
        return self.predict_scores(logits, mode, test_prior, **kwargs).argmax(-1)


def _is_finite_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


__all__ = ["TransportHead"]
