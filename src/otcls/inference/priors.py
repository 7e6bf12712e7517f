"""Assumed test label priors: train, uniform, reverse, explicit, or EM-estimated (Saerens et al., 2002)."""
from __future__ import annotations

from typing import Optional, Union

import torch

PRIOR_NAMES = ("train", "uniform", "reverse", "estimated")
PriorSpec = Union[str, torch.Tensor, list, tuple]


def reverse_prior(prior: torch.Tensor) -> torch.Tensor:
    """Reverse long-tailed prior: the class with the k-th largest mass gets the k-th smallest.

    For classes sorted by frequency (CIFAR-LT) this is ``prior.flip(0)``.
    """
    order = torch.argsort(prior, descending=True, stable=True)
    out = torch.empty_like(prior)
    out[order] = prior[order].flip(0)
    return out


def em_prior(probs: torch.Tensor, source_prior: torch.Tensor, *, tol: float = 1e-8,
             max_iter: int = 1000) -> torch.Tensor:
    """EM estimate of the test prior π from posteriors ``probs`` (N, C) made under ``source_prior``.

    Saerens, Latinne & Decaestecker (2002): repeat
    q_ic ∝ p_ic · π_c / π^s_c (normalised over c),  π_c = mean_i q_ic,
    from π = π^s until the L1 change is below ``tol``. Returns π (C,).
    """
    if probs.dim() != 2 or probs.shape[1] != source_prior.numel():
        raise ValueError(f"probs must be (N, {source_prior.numel()}); got {tuple(probs.shape)}")
    if probs.shape[0] == 0:
        raise ValueError("em_prior needs at least one sample")
    if (source_prior <= 0).any():
        raise ValueError("em_prior: source_prior must be positive in every class")
    probs = probs.double()
    src = (source_prior / source_prior.sum()).double().to(probs.device)
    pi = src.clone()
    for _ in range(max_iter):
        q = probs * (pi / src)
        q = q / q.sum(1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
        new = q.mean(0)
        done = (new - pi).abs().sum() < tol
        pi = new
        if done:
            break
    return pi.to(source_prior.dtype)


def _train_prior(class_counts: Optional[torch.Tensor], what: str) -> torch.Tensor:
    if class_counts is None:
        raise ValueError(f"test_prior='{what}' needs the training class counts; build the head with class_counts=[...]")
    return class_counts / class_counts.sum()


def resolve_prior(spec: PriorSpec, num_classes: int, *, class_counts: Optional[torch.Tensor] = None,
                  probs: Optional[torch.Tensor] = None, source_prior: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Turn a prior name or vector into a probability vector (C,).

    ``estimated`` runs :func:`em_prior` on ``probs`` with ``source_prior`` (default: the train
    prior when ``class_counts`` is known, otherwise uniform).
    """
    if isinstance(spec, str):
        if spec == "uniform":
            return torch.full((num_classes,), 1.0 / num_classes)
        if spec == "train":
            return _train_prior(class_counts, spec)
        if spec == "reverse":
            return reverse_prior(_train_prior(class_counts, spec))
        if spec == "estimated":
            if probs is None:
                raise ValueError("test_prior='estimated' needs the predicted probabilities of the evaluation set")
            if source_prior is None:
                source_prior = (class_counts / class_counts.sum() if class_counts is not None
                                else torch.full((num_classes,), 1.0 / num_classes))
            return em_prior(probs, source_prior)
        raise ValueError(f"unknown test_prior '{spec}'; choose one of: {', '.join(PRIOR_NAMES)}, or a vector "
                         f"of {num_classes} class proportions")
    prior = torch.as_tensor(spec, dtype=torch.get_default_dtype()).flatten()
    if prior.numel() != num_classes:
        raise ValueError(f"test_prior vector has {prior.numel()} entries but there are {num_classes} classes")
    if not torch.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"test_prior must be non-negative with a positive sum; got {prior.tolist()}")
    return prior / prior.sum()
