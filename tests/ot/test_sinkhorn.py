"""Balanced entropic OT and RE-OT against POT and the closed-form facts of DESIGN §1."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import OTConvergenceWarning, proximal_point, scale_prior, solve

from .reference import random_problem


@pytest.mark.parametrize("n,m,eps,seed", [(7, 5, 0.05, 0), (30, 12, 0.1, 1), (16, 40, 0.5, 2)])
@pytest.mark.parametrize("method,pot_fn", [("sinkhorn_log", pot.bregman.sinkhorn_log), ("sinkhorn", pot.sinkhorn)])
def test_entropic_ot_matches_pot(n, m, eps, seed, method, pot_fn):
    C, a, b = random_problem(n, m, seed)
    res = solve(C, a, b, eps=eps, method=method, tol=1e-12, max_iter=100000)
    ref = pot_fn(a.numpy(), b.numpy(), C.numpy(), eps, stopThr=1e-14, numItermax=100000)
    assert res.converged
    np.testing.assert_allclose(res.plan.numpy(), ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(res.plan.sum(0).numpy(), b.numpy(), atol=1e-10)
    np.testing.assert_allclose(res.plan.sum(1).numpy(), a.numpy(), atol=1e-10)


def test_potentials_reproduce_plan():
    C, a, b = random_problem(9, 4, 3)
    Q = torch.rand(9, 4, dtype=torch.float64) + 0.1
    res = solve(C, a, b, eps=0.2, prior=Q, tol=1e-12)
    rebuilt = Q * torch.exp((res.f[:, None] + res.g[None, :] - C) / 0.2)
    torch.testing.assert_close(rebuilt, res.plan)


def test_reot_matches_pot_unbalanced_with_infinite_penalty():
    C, a, b = random_problem(10, 6, 4)
    Q = torch.rand(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) + 0.05
    res = solve(C, a, b, eps=0.1, prior=Q, tol=1e-13, max_iter=100000)
    ref = pot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), C.numpy(), 0.1, float("inf"), reg_type="kl",
                                             c=Q.numpy(), stopThr=1e-14, numItermax=100000)
    np.testing.assert_allclose(res.plan.numpy(), ref, atol=1e-6, rtol=0)


def test_reot_with_product_prior_equals_entropic_ot():
    C, a, b = random_problem(12, 5, 6)
    plain = solve(C, a, b, eps=0.07, tol=1e-12, max_iter=100000)
    reot = solve(C, a, b, eps=0.07, prior=torch.outer(a, b), tol=1e-12, max_iter=100000)
    torch.testing.assert_close(reot.plan, plain.plan, atol=1e-10, rtol=0)


def test_prior_and_scaled_prior_give_same_plan_and_large_eps_gives_scaled_prior():
    C, a, b = random_problem(8, 6, 7)
    Q = torch.rand(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8)) + 0.01
    Qt = scale_prior(Q, a, b)
    torch.testing.assert_close(Qt.sum(1), a)
    torch.testing.assert_close(Qt.sum(0), b)
    # Q~ = diag(u) Q diag(v): the ratio Q~/Q has rank one
    assert torch.linalg.matrix_rank(Qt / Q).item() == 1
    p_q = solve(C, a, b, eps=0.3, prior=Q, tol=1e-12).plan
    p_qt = solve(C, a, b, eps=0.3, prior=Qt, tol=1e-12).plan
    torch.testing.assert_close(p_q, p_qt, atol=1e-10, rtol=0)
    p_big = solve(C, a, b, eps=1e5, prior=Q, tol=1e-12).plan
    torch.testing.assert_close(p_big, Qt, atol=1e-5, rtol=0)


def test_small_eps_approaches_exact_ot_cost():
    C, a, b = random_problem(20, 15, 9)
    exact = pot.emd2(a.numpy(), b.numpy(), C.numpy())
    gaps = [solve(C, a, b, eps=eps, tol=1e-9, max_iter=50000).transport_cost.item() - exact
            for eps in (0.1, 0.01, 0.001)]
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-9
    assert gaps[2] < 1e-3


def test_proximal_point_is_sinkhorn_with_shrinking_eps_and_converges_to_lp():
    C, a, b = random_problem(10, 8, 10)
    eps = 0.2
    pp = proximal_point(C, a, b, eps=eps, n_steps=6)
    for t in (0, 2, 5):
        direct = solve(C, a, b, eps=eps / (t + 1), tol=1e-11, max_iter=100000).plan
        torch.testing.assert_close(pp.plans[t], direct, atol=1e-7, rtol=0)
    costs = pp.costs.numpy()
    assert np.all(np.diff(costs) < 0)
    exact = pot.emd2(a.numpy(), b.numpy(), C.numpy())
    assert costs[-1] - exact < 0.25 * (costs[0] - exact)


def test_semi_relaxed_is_row_softmax():
    C, a, _ = random_problem(6, 4, 11)
    Q = torch.rand(6, 4, dtype=torch.float64) + 0.1
    res = solve(C, a, eps=0.3, prior=Q)
    expected = a[:, None] * torch.softmax(torch.log(Q) - C / 0.3, dim=-1)
    torch.testing.assert_close(res.plan, expected)
    assert res.n_iter.item() == 0 and res.converged


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_eps_stays_finite_with_zero_masses(dtype):
    C, a, b = random_problem(25, 10, 12, dtype=dtype)
    a[3] = 0.0
    b[0] = 0.0
    a, b = a / a.sum(), b / b.sum()
    res = solve(C, a, b, eps=1e-3, tol=1e-4, max_iter=20000)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.g[1:]).all()
    assert res.plan[3].sum() == 0 and res.plan[:, 0].sum() == 0
    torch.testing.assert_close(res.plan.sum(1), a, atol=1e-4, rtol=0)
    torch.testing.assert_close(res.plan.sum(0), b, atol=2e-4, rtol=0)


def test_not_converged_warns_with_violation():
    C, a, b = random_problem(30, 30, 13)
    with pytest.warns(OTConvergenceWarning, match="violation"):
        res = solve(C, a, b, eps=1e-3, tol=1e-9, max_iter=5)
    assert not res.converged and res.error > 1e-9


def test_fixed_iteration_mode_runs_exactly_max_iter():
    C, a, b = random_problem(5, 3, 14)
    res = solve(C, a, b, eps=0.1, tol=None, max_iter=7)
    assert res.n_iter.item() == 7


def test_batch_converges_per_problem_and_equals_single_solves():
    C, a, b = random_problem(12, 7, 15, batch=4)
    eps = torch.tensor([1.0, 0.5, 0.1, 0.03], dtype=torch.float64)
    res = solve(C, a, b, eps=eps, tol=1e-9, max_iter=10000, check_every=5)
    assert res.plan.shape == (4, 12, 7)
    assert res.converged.all()
    assert len(set(res.n_iter.tolist())) > 1  # each problem stopped at its own iteration
    for k in range(4):
        single = solve(C[k], a[k], b[k], eps=eps[k].item(), tol=1e-9, max_iter=10000, check_every=5)
        torch.testing.assert_close(res.plan[k], single.plan, atol=1e-12, rtol=0)
        assert res.n_iter[k] == single.n_iter


def test_shared_marginals_broadcast_over_batch():
    C, a, b = random_problem(6, 5, 16, batch=3)
    res = solve(C, a[0], b[0], eps=0.2)
    torch.testing.assert_close(res.plan.sum(-1), a[0].expand(3, 6), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kw", [dict(), dict(lower="0.9b", upper="1.1b")])
def test_warm_start_from_previous_potentials(kw):
    C, a, b = random_problem(40, 8, 17)
    kw = {k: 0.9 * b if v == "0.9b" else 1.1 * b for k, v in kw.items()}
    b_arg = None if kw else b
    cold = solve(C, a, b_arg, eps=0.02, tol=1e-9, max_iter=20000, **kw)
    warm = solve(C + 1e-3, a, b_arg, eps=0.02, tol=1e-9, max_iter=20000, init_g=cold.g, **kw)
    ref = solve(C + 1e-3, a, b_arg, eps=0.02, tol=1e-9, max_iter=20000, **kw)
    torch.testing.assert_close(warm.plan, ref.plan, atol=1e-8, rtol=0)
    assert warm.n_iter < ref.n_iter / 2
    with pytest.raises(ValueError, match="init_g"):
        solve(C, a, b_arg, eps=0.02, init_g=torch.zeros(3, dtype=torch.float64), **kw)
