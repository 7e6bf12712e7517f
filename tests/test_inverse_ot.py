"""docs/math.md §2, checked: KL~(label plan | semi-relaxed RE-OT plan of the logits) is the RE-OT loss
CE(z/τ + log Q) — the plan from the solver core, the divergence in NumPy, the loss from the loss module."""
import numpy as np
import pytest
import torch

from otcls.losses import build_loss
from otcls.ot import solve


def generalised_kl(p_tilde: np.ndarray, p: np.ndarray) -> float:
    mask = p_tilde > 0
    return float((p_tilde[mask] * np.log(p_tilde[mask] / p[mask])).sum() - p_tilde.sum() + p.sum())


@pytest.mark.parametrize("lam,tau", [(0.0, 1.0), (0.3, 0.5), (1.0, 2.0)])
def test_reot_loss_is_inverse_semi_relaxed_ot(lam, tau):
    counts = [40, 12, 5, 2]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 1, 0, 3, 2, 0, 1])
    ratio = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    q = ((1 - lam) / 4 + lam * ratio).expand(7, 4)
    plan = solve(-z, torch.full((7,), 1 / 7, dtype=torch.float64), eps=tau, prior=q).plan
    label_plan = np.eye(4)[y.numpy()] / 7
    loss = build_loss("reot", num_classes=4, class_counts=counts, prior="ratio", lam=lam, tau=tau)
    assert generalised_kl(label_plan, plan.numpy()) == pytest.approx(float(loss(z, y)), abs=1e-12)
