"""Barycenters against POT, the deblurring prior, and barycentric projections by hand."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import barycenter, barycentric_projection, class_barycenters, deblur_prior, solve


def _grid_problem(d=24, S=3, seed=40):
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(d, dtype=torch.float64)
    C = (x[:, None] - x[None]) ** 2
    C = C / C.max()
    A = torch.rand(S, d, generator=g, dtype=torch.float64) + 0.01
    return C, A / A.sum(1, keepdim=True)


@pytest.mark.parametrize("weights", [None, [0.2, 0.3, 0.5]])
def test_barycenter_matches_pot(weights):
    C, A = _grid_problem()
    res = barycenter(A, C, eps=0.01, weights=weights, tol=1e-13, max_iter=20000)
    w = None if weights is None else np.array(weights)
    # POT's log-domain IBP; its scaling-domain variant stops at a different point for
    # non-uniform weights, the log variant and ours agree to machine precision.
    ref = pot.bregman.barycenter(A.T.numpy(), C.numpy(), 0.01, weights=w, method="sinkhorn_log",
                                 stopThr=1e-15, numItermax=20000)
    np.testing.assert_allclose(res.barycenter.numpy(), ref, atol=1e-8, rtol=0)
    torch.testing.assert_close(res.plans.sum(-2), A)  # columns are the inputs
    for s in range(3):
        torch.testing.assert_close(res.plans[s].sum(-1), res.barycenter, atol=1e-10, rtol=0)


def test_batched_barycenter_equals_single():
    C, A = _grid_problem(S=2)
    A2 = torch.stack([A, A.flip(-1)])
    res = barycenter(A2, C, eps=0.02, tol=1e-12)
    for k in range(2):
        torch.testing.assert_close(res.barycenter[k], barycenter(A2[k], C, eps=0.02, tol=1e-12).barycenter)


def test_deblur_prior_formula_and_sharper_barycenter():
    C, A = _grid_problem(d=30, S=2, seed=41)
    noise, image = A[0], torch.zeros(30, dtype=torch.float64)
    image[12:15] = 1.0
    image = image / image.sum()
    lam = 0.3
    P = solve(C, noise, image, eps=0.01, tol=1e-12).plan
    Q = deblur_prior(noise, image, C, eps=0.01, lam=lam)
    torch.testing.assert_close(Q, (1 - lam) * P.T + lam * P)
    hists = torch.stack([noise, image])
    plain = barycenter(hists, C, eps=0.01, weights=[lam, 1 - lam], tol=1e-10).barycenter
    sharp = barycenter(hists, C, eps=0.01, weights=[lam, 1 - lam], prior=Q, tol=1e-10).barycenter
    entropy = lambda p: -(p.clamp_min(1e-300) * p.clamp_min(1e-300).log()).sum()
    assert entropy(sharp) < entropy(plain)  # the RE-OT prior removes blur


def test_barycentric_projections_by_hand():
    P = torch.tensor([[0.1, 0.3, 0.0], [0.2, 0.0, 0.2], [0.0, 0.0, 0.2]])
    y = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    T = barycentric_projection(P, y)
    torch.testing.assert_close(T, torch.tensor([[0.25, 1.5], [2.5, 2.0], [4.0, 4.0]]))
    torch.testing.assert_close(barycentric_projection(P)[0], torch.tensor([0.25, 0.75, 0.0]))
    feats = torch.tensor([[1.0, 1.0], [3.0, -1.0], [0.0, 2.0]])
    centers = class_barycenters(P, feats)
    torch.testing.assert_close(centers, torch.tensor([[7 / 3, -1 / 3], [1.0, 1.0], [1.5, 0.5]]))
    with pytest.raises(ValueError, match="features have 2 rows"):
        class_barycenters(P, feats[:2])


def test_a_class_without_mass_has_no_barycenter():
    P = torch.tensor([[0.5, 0.0], [0.5, 0.0]])
    with pytest.warns(RuntimeWarning, match=r"columns \(classes\) \[1\] get no mass"):
        centers = class_barycenters(P, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    torch.testing.assert_close(centers[0], torch.tensor([2.0, 3.0]))
    assert torch.isnan(centers[1]).all()  # not a fake centroid at the origin
