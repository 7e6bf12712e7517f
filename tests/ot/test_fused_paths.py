"""The fused C loop, the domain split and the check schedule, each against an independent computation:
the plan's own marginals, POT, the PyTorch path's iteration count, or a hand-counted schedule."""
from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import fused, solve
from otcls.ot.problem import LinearProblem
from otcls.ot.sinkhorn import sinkhorn, sinkhorn_log

needs_fused = pytest.mark.skipif(not fused.available(), reason="the fused C extension was not built here")


def problems(B, n, m, seed):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(B, n, m, generator=g, dtype=torch.float64)
    a = torch.rand(B, n, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(B, m, generator=g, dtype=torch.float64) + 0.2
    return cost, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def real_error(res, a, b):
    """``|Pᵀ1 - b|_1 / sum(a)`` of the returned plan, computed from the plan itself."""
    return (res.plan.sum(-2) - b).abs().sum(-1) / a.sum(-1)


@needs_fused
@pytest.mark.parametrize("overrelax", [True, False])
def test_fused_reported_error_is_the_returned_plans_error(overrelax):
    cost, a, b = problems(4, 60, 30, seed=1)
    p = LinearProblem.build(cost, a, b, eps=0.1)
    res = sinkhorn(p, tol=1e-6, max_iter=2000, fused=True, overrelax=overrelax)
    real = real_error(res, a, b)
    assert torch.allclose(res.error, real, rtol=1e-3, atol=1e-12), (res.error, real)
    assert bool((real <= 1e-6).all())


@needs_fused
@pytest.mark.parametrize("eps", [0.1, 0.03])
def test_fused_overrelaxation_takes_as_many_iterations_as_the_pytorch_path(eps):
    # both paths over-relax both half-steps with the same adaptive omega: their iteration counts agree up to
    # the PyTorch path's check granularity (it measures every check_every // 2 relaxed steps, the fused loop
    # every step); a loop that relaxes one half-step only needs ~1.7-3x as many
    cost, a, b = problems(6, 60, 30, seed=2)
    kw = dict(tol=1e-6, max_iter=5000, check_every=10, overrelax=True)
    got = sinkhorn(LinearProblem.build(cost, a, b, eps=eps), fused=True, **kw).n_iter
    ref = sinkhorn(LinearProblem.build(cost, a, b, eps=eps), fused=False, **kw).n_iter
    assert bool((got <= ref + 2).all()) and bool((got >= ref - 10).all()), (got.tolist(), ref.tolist())


@needs_fused
def test_zero_column_mass_is_not_fused_and_matches_pot():
    cost, a, b = problems(2, 8, 5, seed=3)
    b[:, 2] = 0.0
    b = b / b.sum(-1, keepdim=True)
    p = LinearProblem.build(cost, a, b, eps=0.1)
    assert not fused.eligible(p, "detach")
    with pytest.raises(ValueError, match="fused=True"):
        sinkhorn(p, fused=True)
    for method in ("sinkhorn", "auto"):
        res = solve(cost, a, b, eps=0.1, tol=1e-10, max_iter=5000, method=method)
        assert res.method == "sinkhorn"
        for k in range(2):
            want = pot.sinkhorn(a[k].numpy(), b[k].numpy(), cost[k].numpy(), 0.1, stopThr=1e-13, numItermax=100000)
            np.testing.assert_allclose(res.plan[k].numpy(), want, atol=1e-9)


@pytest.mark.parametrize("path", ["fused", "pytorch", "log"])
@pytest.mark.parametrize("max_iter", [30, 37])
def test_a_solve_that_does_not_converge_runs_exactly_max_iter(path, max_iter):
    if path == "fused" and not fused.available():
        pytest.skip("the fused C extension was not built here")
    cost, a, b = problems(3, 20, 10, seed=4)
    p = LinearProblem.build(cost, a, b, eps=0.01)
    with pytest.warns(UserWarning, match="did not converge"):
        if path == "log":
            res = sinkhorn_log(p, tol=1e-14, max_iter=max_iter)
        else:
            res = sinkhorn(p, tol=1e-14, max_iter=max_iter, fused=path == "fused")
    assert res.n_iter.tolist() == [max_iter] * 3
    assert not bool(res.converged.any())


def test_mixed_domain_batch_matches_pot_per_problem_in_any_order():
    # eps 1e-3 and 2e-3 take the log domain, 0.5 the scaling domain: grouped as [2, 0, 1], a permutation
    # whose inverse [1, 2, 0] differs from it, so a result put back in the grouping order instead is caught
    cost, a, b = problems(3, 6, 4, seed=5)
    eps = torch.tensor([1e-3, 2e-3, 0.5], dtype=torch.float64)
    for chunk_size in (None, 1):
        res = solve(cost, a, b, eps=eps, tol=1e-9, max_iter=200000, chunk_size=chunk_size)
        assert set(res.method.split("+")) == {"sinkhorn", "sinkhorn_log"}
        for k in range(3):
            want = pot.bregman.sinkhorn_log(a[k].numpy(), b[k].numpy(), cost[k].numpy(), float(eps[k]),
                                            stopThr=1e-12, numItermax=500000)
            np.testing.assert_allclose(res.plan[k].numpy(), want, atol=1e-6, err_msg=f"problem {k}")


@pytest.mark.parametrize("path", ["fused", "pytorch", "log"])
def test_reported_error_is_relative_to_the_mass(path):
    # marginals of mass 3: error is |Pᵀ1 - b|_1 / sum(a) of the returned plan, on every path
    if path == "fused" and not fused.available():
        pytest.skip("the fused C extension was not built here")
    cost, a, b = problems(3, 20, 10, seed=6)
    a, b = 3 * a, 3 * b
    p = LinearProblem.build(cost, a, b, eps=0.01)
    kw = dict(tol=1e-12, max_iter=10)
    with pytest.warns(UserWarning, match="did not converge"):
        res = sinkhorn_log(p, **kw) if path == "log" else sinkhorn(p, fused=path == "fused", **kw)
    real = (res.plan.sum(-2) - b).abs().sum(-1) / 3.0
    assert bool((real > 1e-6).all())
    assert torch.allclose(res.error, real, rtol=1e-6, atol=0), (res.error, real)


@pytest.mark.parametrize("path", ["fused", "pytorch", "log"])
def test_reot_prior_matches_pot_on_every_path(path):
    # RE-OT with prior Q is entropic OT with cost C - eps log Q (POT's kernel exp(-C/eps) Q)
    if path == "fused" and not fused.available():
        pytest.skip("the fused C extension was not built here")
    cost, a, b = problems(2, 7, 5, seed=7)
    Q = torch.rand(2, 7, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 2 + 0.1
    p = LinearProblem.build(cost, a, b, eps=0.2, prior=Q)
    kw = dict(tol=1e-11, max_iter=20000)
    res = sinkhorn_log(p, **kw) if path == "log" else sinkhorn(p, fused=path == "fused", **kw)
    for k in range(2):
        want = pot.sinkhorn(a[k].numpy(), b[k].numpy(), (cost[k] - 0.2 * Q[k].log()).numpy(), 0.2,
                            stopThr=1e-13, numItermax=100000)
        np.testing.assert_allclose(res.plan[k].numpy(), want, atol=1e-9)
