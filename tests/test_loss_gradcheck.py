"""``torch.autograd.gradcheck`` (float64, finite differences) on the OT losses: the DB-OT loss through its
dual-ascent iterations, the RE-OT loss with every prior, and the contrastive losses (semi-relaxed and
Sinkhorn couplings). Each loss's gradient must equal the numerical derivative of its own value."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from otcls.losses import build_loss

COUNTS = [9, 5, 2]


def logits_and_targets(b: int = 6, c: int = 3, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g, dtype=torch.float64).requires_grad_()
    return logits, torch.tensor([0, 0, 1, 2, 0, 1][:b])


@pytest.mark.parametrize("options", [
    {"delta": 0.2, "iters": 3, "prior": "counts"},
    {"delta": 0.0, "iters": 4, "prior": "none"},  # equal bounds: every column binds
    {"delta": 0.5, "iters": 2, "ratio": "batch"},
    {"delta": None, "iters": 1, "tau": 0.5},
])
def test_dbot_loss(options):
    loss = build_loss("dbot", num_classes=3, class_counts=COUNTS, **options)
    logits, targets = logits_and_targets()
    assert gradcheck(lambda z: loss(z, targets), (logits,))


@pytest.mark.parametrize("options", [
    {"prior": "ratio", "lam": 0.4, "tau": 0.7},
    {"prior": "batch", "lam": 0.8},
    {"prior": "mix", "lam": 0.5, "mix": 0.3, "sharpen": 1.03},
    {"prior": "ratio", "lam": 1.0, "sinkhorn": True},
])
def test_reot_loss(options):
    loss = build_loss("reot", num_classes=3, class_counts=COUNTS, **options)
    logits, targets = logits_and_targets()
    assert gradcheck(lambda z: loss(z, targets), (logits,))


def test_reot_loss_with_teacher_prior():
    loss = build_loss("reot", num_classes=3, prior="teacher", lam=0.6)
    logits, targets = logits_and_targets()
    teacher = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).softmax(-1)
    assert gradcheck(lambda z: loss(z, targets, teacher_probs=teacher), (logits,))


@pytest.mark.parametrize("name,options", [
    ("nt_xent", {"temperature": 0.5}),
    ("supcon", {"temperature": 0.5}),
    ("reot_contrastive", {"temperature": 0.5, "prior": "class", "target": "class", "coupling": "semi"}),
    ("reot_contrastive", {"temperature": 0.5, "prior": "frequency", "target": "instance", "coupling": "balanced",
                          "sinkhorn_iters": 4}),
])
def test_contrastive_losses(name, options):
    loss = build_loss(name, num_classes=3, class_counts=COUNTS, **options)
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(4, 5, generator=g, dtype=torch.float64).requires_grad_()
    z2 = torch.randn(4, 5, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([0, 1, 0, 2])
    assert gradcheck(lambda a, b: loss(a, b, labels), (z1, z2))
