"""Contrastive losses against independent references: NT-Xent/SupCon written out in NumPy,
Eq. 16 of the RE-OT paper evaluated by hand, and POT's Sinkhorn for the balanced coupling."""
import math

import numpy as np
import ot
import pytest
import torch

from otcls.losses import LOSSES
from otcls.losses.contrastive import (NTXentLoss, REOTContrastiveLoss, SupConLoss, contrastive_prior)


def _batch(n=6, d=4, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    z2 = z1 + 0.5 * torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    return z1, z2, y


def _np_similarity(z1, z2):
    z = np.concatenate([z1.numpy(), z2.numpy()])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    return z @ z.T


def _np_eq16(z1, z2, Q, positives, tau):
    """RE-OT paper Eq. 16 with a_i = 1/(2N): mean_i −Σ_j P̃_ij/a_i · log(Q_ij e^{−C_ij/τ} / Σ_k Q_ik e^{−C_ik/τ})."""
    C = 1.0 - _np_similarity(z1, z2)
    K = Q * np.exp(-C / tau)
    np.fill_diagonal(K, 0.0)
    rows = []
    for i in range(len(C)):
        js = np.flatnonzero(positives[i])
        rows.append(-np.mean(np.log(K[i, js] / K[i].sum())))
    return float(np.mean(rows))


def _pairs(n):
    pos = np.zeros((2 * n, 2 * n), dtype=bool)
    pos[np.arange(2 * n), (np.arange(2 * n) + n) % (2 * n)] = True
    return pos


def _same_class(y):
    yy = np.concatenate([y.numpy(), y.numpy()])
    pos = yy[:, None] == yy[None, :]
    np.fill_diagonal(pos, False)
    return pos


def test_registered():
    assert {"nt_xent", "supcon", "reot_contrastive"} <= set(LOSSES.names())


@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_nt_xent_matches_numpy(tau):
    z1, z2, _ = _batch()
    ref = _np_eq16(z1, z2, np.ones((12, 12)), _pairs(6), tau)
    assert NTXentLoss(tau)(z1, z2).item() == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_reot_uniform_prior_equals_nt_xent(tau):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        z1, z2, y = _batch(dtype=dtype)
        reot = REOTContrastiveLoss(tau, prior="uniform", target="instance")(z1, z2)
        assert torch.allclose(reot, NTXentLoss(tau)(z1, z2), rtol=tol, atol=0)
        # λ(t) cannot matter for the uniform prior, and the labels are not needed.
        loss = REOTContrastiveLoss(tau, prior="uniform", target="instance")
        loss.lam = 0.3
        assert torch.allclose(loss(z1, z2, y), reot, rtol=tol, atol=0)


def test_reot_class_target_uniform_prior_equals_supcon():
    z1, z2, y = _batch(n=8)
    ref = _np_eq16(z1, z2, np.ones((16, 16)), _same_class(y), 0.1)
    assert SupConLoss(0.1)(z1, z2, y).item() == pytest.approx(ref, rel=1e-10)
    assert REOTContrastiveLoss(0.1, prior="uniform", target="class")(z1, z2, y).item() == pytest.approx(ref, rel=1e-10)


def test_class_prior_hand_made_batch():
    """Two images, identical views e1 and e2, labels (0, 1): for every row the other view of the same
    image has C = 0, Q = 0.7; the two other samples have C = 1, Q = 0.3, so
    loss = −log(0.7 / (0.7 + 2·0.3·e^{−1/τ})) = log(1 + (6/7) e^{−1/τ})."""
    tau = 0.5
    z = torch.eye(2, dtype=torch.float64)
    loss = REOTContrastiveLoss(tau, prior="class", target="instance", q_same=0.7, q_diff=0.3)
    expected = math.log(1 + 6 / 7 * math.exp(-1 / tau))
    assert loss(z, z.clone(), torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("prior", ["class", "frequency"])
@pytest.mark.parametrize("target", ["instance", "class"])
def test_prior_losses_match_eq16(prior, target):
    z1, z2, y = _batch(n=7, seed=3)
    yy = np.concatenate([y.numpy(), y.numpy()])
    same = yy[:, None] == yy[None, :]
    if prior == "class":
        Q = np.where(same, 0.7, 0.3)
    else:  # 1 / (number of other samples of j's class)
        Q = 1.0 / (same.sum(0)[None, :] - same)
        np.fill_diagonal(Q, 1.0)
    lam = 0.4
    Q = np.where(np.eye(14, dtype=bool), 0.0, Q)
    Q = (1 - lam) / 13 * (1 - np.eye(14)) + lam * Q / Q.sum(1, keepdims=True)
    positives = _pairs(7) if target == "instance" else _same_class(y)
    loss = REOTContrastiveLoss(0.2, prior=prior, target=target)
    loss.lam = lam
    assert loss(z1, z2, y).item() == pytest.approx(_np_eq16(z1, z2, Q, positives, 0.2), rel=1e-10)


def test_frequency_prior_with_training_counts():
    z1, z2, y = _batch(n=5, seed=1)
    counts = torch.tensor([100.0, 10.0, 1.0])
    r = contrastive_prior("frequency", y, 5, class_counts=counts, dtype=torch.float64)
    yy = torch.cat([y, y])
    ref = (1.0 / counts.double()[yy])[None, :].repeat(10, 1).fill_diagonal_(0)
    assert torch.allclose(r, ref / ref.sum(1, keepdim=True))
    loss = REOTContrastiveLoss(0.1, prior="frequency", num_classes=3, class_counts=counts)
    assert torch.isfinite(loss(z1, z2, y))


def test_frequency_prior_balances_classes_in_each_row():
    _, _, y = _batch(n=9, seed=2)
    r = contrastive_prior("frequency", y, 9, dtype=torch.float64)
    yy = torch.cat([y, y])
    for i in range(18):
        per_class = torch.stack([r[i, yy == k].sum() for k in yy.unique()])
        assert torch.allclose(per_class, per_class.new_full(per_class.shape, 1 / len(per_class)))


def test_balanced_coupling_matches_pot():
    z1, z2, y = _batch(n=5, seed=4)
    tau = 0.3
    loss = REOTContrastiveLoss(tau, prior="class", target="instance", coupling="balanced", sinkhorn_iters=300)
    log_p, a = loss.log_coupling(z1, z2, y)
    P = log_p.exp().numpy()
    Q = loss.prior_matrix(y, 5, torch.zeros(1, dtype=torch.float64)).numpy()
    C = 1.0 - _np_similarity(z1, z2)
    # RE-OT kernel Q·e^{−C/τ} is plain entropic OT with cost C − τ log Q (Q_ii = 0 → a huge cost).
    C_eff = C - tau * np.log(np.where(Q > 0, Q, 1e-300))
    ref = ot.sinkhorn(a.numpy(), a.numpy(), C_eff, reg=tau, method="sinkhorn_log", numItermax=5000, stopThr=1e-13)
    assert np.abs(P - ref).max() < 1e-9
    assert np.allclose(P.sum(0), a.numpy(), atol=1e-9) and np.allclose(P.sum(1), a.numpy(), atol=1e-9)


@pytest.mark.parametrize("make", [
    lambda: NTXentLoss(0.05), lambda: SupConLoss(0.05),
    lambda: REOTContrastiveLoss(0.05, prior="class", target="instance"),
    lambda: REOTContrastiveLoss(0.05, prior="frequency", target="class"),
    lambda: REOTContrastiveLoss(0.05, prior="frequency", coupling="balanced", sinkhorn_iters=30),
])
def test_gradients_finite_at_low_temperature(make):
    z1, z2, y = _batch(n=16, d=8, seed=5, dtype=torch.float32)
    z1 = (z1 * 30).requires_grad_()  # large norms and near-duplicate views stress the exponentials
    loss = make()(z1, z2 * 30, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_bad_inputs():
    z1, z2, y = _batch()
    with pytest.raises(ValueError, match="must both have shape"):
        NTXentLoss()(z1, z2[:3])
    with pytest.raises(ValueError, match="needs class labels"):
        SupConLoss()(z1, z2)
    with pytest.raises(ValueError, match="labels must have shape"):
        SupConLoss()(z1, z2, y[:2])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        REOTContrastiveLoss(num_classes=2)(z1, z2, torch.full((6,), 2))
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)
    with pytest.raises(ValueError, match="unknown prior"):
        REOTContrastiveLoss(prior="zipf")
    with pytest.raises(ValueError, match="class_counts needs num_classes"):
        REOTContrastiveLoss(class_counts=[1, 2])
    loss = REOTContrastiveLoss()
    loss.lam = 1.5
    with pytest.raises(ValueError, match="lam must lie"):
        loss(z1, z2, y)
