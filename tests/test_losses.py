"""Losses against their published formulas, written out independently in NumPy (float64)."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.losses import LOSSES, build_loss

COUNTS = [50.0, 20.0, 5.0, 1.0]
C = len(COUNTS)
Z = np.array([[2.0, -1.0, 0.5, 0.0], [0.1, 0.3, -2.0, 1.5], [-0.7, 0.2, 0.9, -1.1],
              [1.2, 1.1, -0.4, 0.3], [0.0, -0.5, 0.4, 2.2]])
Y = np.array([0, 1, 2, 3, 1])


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def _loss(name, **kw):
    return build_loss(name, num_classes=C, class_counts=COUNTS, **kw)(_t(Z), torch.tensor(Y)).item()


def _logsoftmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _ce(z):
    return -_logsoftmax(z)[np.arange(len(Y)), Y].mean()


def _cb_weights(beta):
    w = (1 - beta) / (1 - beta ** np.array(COUNTS))
    return w * C / w.sum()


def test_ce_and_focal_match_formula():
    assert _loss("ce") == pytest.approx(_ce(Z), abs=1e-12)
    p = np.exp(_logsoftmax(Z))[np.arange(len(Y)), Y]
    assert _loss("focal", gamma=2.0) == pytest.approx(np.mean(-(1 - p) ** 2 * np.log(p)), abs=1e-12)
    assert _loss("focal", gamma=0.0) == pytest.approx(_ce(Z), abs=1e-12)


def test_balanced_softmax_matches_formula():
    n = np.array(COUNTS)
    e = n * np.exp(Z)
    ref = np.mean(-np.log(e[np.arange(len(Y)), Y] / e.sum(1)))
    assert _loss("balanced_softmax") == pytest.approx(ref, abs=1e-12)


def test_logit_adjust_adds_tau_log_prior():
    # With zero logits softmax(z + log π) = π, so the loss is -mean log π_y (plus sign);
    # the wrong (post-hoc) sign would give -mean log((1/π_y) / Σ 1/π).
    pi = np.array(COUNTS) / sum(COUNTS)
    zero = torch.zeros(len(Y), C, dtype=torch.float64)
    got = build_loss("logit_adjust", num_classes=C, class_counts=COUNTS)(zero, torch.tensor(Y)).item()
    assert got == pytest.approx(-np.mean(np.log(pi[Y])), abs=1e-12)
    wrong = -np.mean(np.log((1 / pi[Y]) / (1 / pi).sum()))
    assert abs(got - wrong) > 0.5
    assert _loss("logit_adjust", tau=2.0) == pytest.approx(_ce(Z + 2.0 * np.log(pi)), abs=1e-12)


def test_class_balanced_ce_and_focal():
    w = _cb_weights(0.99)
    nll = -_logsoftmax(Z)[np.arange(len(Y)), Y]
    assert _loss("cb_ce", beta=0.99) == pytest.approx(np.mean(w[Y] * nll), abs=1e-12)
    onehot = np.eye(C)[Y]
    pt = 1 / (1 + np.exp(-np.where(onehot == 1, Z, -Z)))
    focal = (-(1 - pt) ** 2.0 * np.log(pt)).sum(1)
    assert _loss("cb_focal", beta=0.99, gamma=2.0) == pytest.approx(np.mean(w[Y] * focal), abs=1e-12)
    # β = 0 gives equal weights: cb_ce is plain CE.
    assert _loss("cb_ce", beta=0.0) == pytest.approx(_ce(Z), abs=1e-12)


def test_ldam_margins_and_drw():
    n = np.array(COUNTS)
    m = n ** -0.25
    m = m * 0.5 / m.max()
    adj = Z - np.eye(C)[Y] * m[Y][:, None]
    nll = -_logsoftmax(30.0 * adj)[np.arange(len(Y)), Y]
    loss = build_loss("ldam", num_classes=C, class_counts=COUNTS, drw_start=0.5, drw_beta=0.99)
    z, y = _t(Z), torch.tensor(Y)
    loss.set_progress(4, 10)
    assert loss(z, y).item() == pytest.approx(nll.mean(), abs=1e-10)
    loss.set_progress(5, 10)  # DRW from epoch 0.5·10 on: weighted mean with CB weights
    w = _cb_weights(0.99)[Y]
    assert loss(z, y).item() == pytest.approx((w * nll).sum() / w.sum(), abs=1e-10)
    absolute = build_loss("ldam", num_classes=C, class_counts=COUNTS, drw_start=7)
    absolute.set_progress(6, 10)
    assert not absolute.drw_active
    absolute.set_progress(7, 10)
    assert absolute.drw_active


def test_reot_reduces_to_ce_and_balanced_softmax():
    assert _loss("reot", lam=0.0) == pytest.approx(_loss("ce"), abs=1e-14)
    assert _loss("reot", lam=1.0) == pytest.approx(_loss("balanced_softmax"), abs=1e-14)
    pi = np.array(COUNTS) / sum(COUNTS)
    q = 0.7 * 0.25 + 0.3 * pi
    assert _loss("reot", lam=0.3, tau=2.0) == pytest.approx(_ce(Z / 2.0 + np.log(q)), abs=1e-12)


def test_reot_batch_mix_teacher_and_sharpen():
    batch = np.bincount(Y, minlength=C) / len(Y)
    pi = np.array(COUNTS) / sum(COUNTS)
    q = 0.5 / C + 0.5 * batch
    assert _loss("reot", prior="batch", lam=0.5) == pytest.approx(_ce(Z + np.log(q)), abs=1e-12)
    r = 0.25 * pi + 0.75 * batch
    assert _loss("reot", prior="mix", mix=0.25, lam=1.0) == pytest.approx(_ce(Z + np.log(r)), abs=1e-12)
    teacher = np.exp(_logsoftmax(Z[::-1].copy()))
    loss = build_loss("reot", num_classes=C, prior="teacher", lam=0.6)
    got = loss(_t(Z), torch.tensor(Y), teacher_probs=_t(teacher)).item()
    assert got == pytest.approx(_ce(Z + np.log(0.4 / C + 0.6 * teacher)), abs=1e-12)
    qs = (0.2 / C + 0.8 * pi) ** 1.03
    qs = qs / qs.sum()
    assert _loss("reot", lam=0.8, sharpen=1.03) == pytest.approx(_ce(Z + np.log(qs)), abs=1e-12)


def test_reot_sinkhorn_prior_matches_pot():
    pi = np.array(COUNTS) / sum(COUNTS)
    q = np.tile(0.5 / C + 0.5 * pi, (len(Y), 1))
    q_tilde = pot.sinkhorn(np.full(len(Y), 1 / len(Y)), pi, -np.log(q), reg=1.0, stopThr=1e-13, numItermax=100000)
    assert _loss("reot", lam=0.5, sinkhorn=True) == pytest.approx(_ce(Z + np.log(q_tilde)), abs=1e-7)


def _dbot_reference(z, y, r, delta, k, tau=1.0):
    """The exact DB-OT dual ascent (DESIGN §1) from v = 1, written out in NumPy; the plan is
    read after a final row scaling (rows exactly 1/n), as otcls.ot returns it."""
    n = len(y)
    a = np.full(n, 1 / n)
    kern = np.exp(z / tau)
    lo, hi = np.maximum((1 - delta) * r, 0), (1 + delta) * r
    v = np.ones(z.shape[1])
    for _ in range(k):
        u = a / (kern @ v)
        s = kern.T @ u
        v = np.maximum(lo / s, np.minimum(1.0, hi / s))
    u = a / (kern @ v)
    p = u[:, None] * kern * v[None, :]
    pt = np.eye(z.shape[1])[y] / n
    mask = pt > 0
    return (pt[mask] * np.log(pt[mask] / p[mask])).sum() - pt.sum() + p.sum()


@pytest.mark.parametrize("delta,k", [(0.0, 1), (0.2, 3), (0.5, 10)])
def test_dbot_loss_matches_numpy_ascent(delta, k):
    pi = np.array(COUNTS) / sum(COUNTS)
    ref = _dbot_reference(Z, Y, pi, delta, k)
    assert _loss("dbot", delta=delta, iters=k) == pytest.approx(ref, abs=1e-9)


def test_dbot_reduction_to_balanced_softmax():
    # Bounds that never bind (δ=None, or δ ≥ max(1, 1/min r - 1)) keep g = 0: CE(z + log Q).
    big = 1.0 / (min(COUNTS) / sum(COUNTS))
    bs = _loss("balanced_softmax")
    assert _loss("dbot", delta=None, prior="counts") == pytest.approx(bs, abs=1e-12)
    assert _loss("dbot", delta=big, iters=5, prior="counts") == pytest.approx(bs, abs=1e-12)
    assert _loss("dbot", delta=big, iters=5) == pytest.approx(_ce(Z), abs=1e-12)
    # Binding bounds are a different loss.
    assert abs(_loss("dbot", delta=0.0, iters=1, prior="counts") - bs) > 1e-3


def test_dbot_batch_ratio_drops_absent_classes():
    y = np.array([0, 0, 1, 1, 0])  # classes 2, 3 absent
    loss = build_loss("dbot", num_classes=C, ratio="batch", delta=0.1, iters=4)
    r = np.bincount(y, minlength=2)[:2] / len(y)
    ref = _dbot_reference(Z[:, :2], y, r, 0.1, 4)
    assert loss(_t(Z), torch.tensor(y)).item() == pytest.approx(ref, abs=1e-9)


ALL_KW = {"reot": {"lam": 1.0, "prior": "batch"}, "dbot": {"delta": 0.2, "iters": 3}}


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if n in
                                  ("ce", "focal", "ldam", "logit_adjust", "cb_ce", "cb_focal",
                                   "balanced_softmax", "reot", "dbot")])
def test_gradients_finite_for_extreme_logits_and_missing_classes(name):
    torch.manual_seed(0)
    z = (torch.randint(0, 2, (6, C)).double() * 2 - 1) * 1e4
    z.requires_grad_(True)
    y = torch.tensor([0, 0, 1, 0, 1, 1])  # classes 2, 3 missing
    loss = build_loss(name, num_classes=C, class_counts=COUNTS, **ALL_KW.get(name, {}))
    if name == "ldam":
        loss.set_progress(100, 100)
    value = loss(z, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_bad_inputs_raise_specific_errors():
    with pytest.raises(ValueError, match="unknown loss 'nope'.*balanced_softmax.*reot"):
        build_loss("nope", num_classes=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['gama'\]"):
        build_loss("focal", num_classes=3, gama=2)
    with pytest.raises(ValueError, match="zeros at classes \\[1\\]"):
        build_loss("balanced_softmax", num_classes=3, class_counts=[3, 0, 1])
    with pytest.raises(ValueError, match="needs class_counts"):
        build_loss("ldam", num_classes=3)
    with pytest.raises(ValueError, match="3 entries but num_classes=4"):
        build_loss("cb_ce", num_classes=4, class_counts=[1, 2, 3])
    ce = build_loss("ce", num_classes=3)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        ce(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, 3\)"):
        ce(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="lam"):
        build_loss("reot", num_classes=3, class_counts=[1, 2, 3]).lam = 1.5
    with pytest.raises(ValueError, match="teacher_probs"):
        build_loss("reot", num_classes=3, prior="teacher")(torch.zeros(2, 3), torch.tensor([0, 1]))
