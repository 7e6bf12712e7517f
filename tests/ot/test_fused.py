"""The fused C loop for batches of small balanced problems (otcls.ot.fused) against POT and the PyTorch path."""
import math
import platform
import sys
import warnings

import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import OTConvergenceWarning, fused, solve

pytestmark = pytest.mark.skipif(not fused.available(), reason="C extension otcls.ot._fused_sinkhorn not built")


def test_built_where_the_project_is_developed():
    # CI and the development machines are Linux x86_64 with gcc: the extension must have compiled there
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        pytest.skip("the build is optional elsewhere")
    assert fused.available()


def problems(B, n, m, dtype=torch.float64, seed=0, prior=False):
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(B, n, m, generator=g, dtype=torch.float64) * 3
    a = torch.rand(B, n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(B, m, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    Q = torch.rand(B, n, m, generator=g, dtype=torch.float64) + 0.05 if prior else None
    cast = (lambda x: None if x is None else x.to(dtype))
    return cast(C), cast(a), cast(b), cast(Q)


@pytest.mark.parametrize("shape", [(3, 37, 23), (2, 16, 16), (4, 5, 130)])
def test_plan_matches_pot(shape):
    C, a, b, _ = problems(*shape)
    res = solve(C, a, b, eps=0.5, tol=1e-11, max_iter=5000, grad="detach", fused=True)
    for k in range(shape[0]):
        ref = pot.sinkhorn(a[k].numpy(), b[k].numpy(), C[k].numpy(), 0.5, stopThr=1e-13, numItermax=100000)
        np.testing.assert_allclose(res.plan[k].numpy(), ref, atol=1e-11, rtol=1e-8)
    assert res.converged.all() and res.method == "sinkhorn"


def test_prior_matches_pot_with_the_prior_in_the_cost():
    # RE-OT's kernel Q ⊙ exp(-C/eps) is POT's Gibbs kernel of the cost C - eps log Q
    C, a, b, Q = problems(2, 30, 12, prior=True)
    eps = 0.3
    res = solve(C, a, b, eps=eps, prior=Q, tol=1e-11, max_iter=5000, grad="detach", fused=True)
    for k in range(2):
        ref = pot.sinkhorn(a[k].numpy(), b[k].numpy(), (C[k] - eps * Q[k].log()).numpy(), eps, stopThr=1e-13,
                           numItermax=100000)
        np.testing.assert_allclose(res.plan[k].numpy(), ref, atol=1e-11, rtol=1e-8)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_same_solution_as_the_pytorch_path(dtype, tol):
    C, a, b, Q = problems(5, 64, 40, dtype=dtype, prior=True)
    kw = dict(eps=torch.tensor([0.2, 0.5, 1.0, 2.0, 0.7], dtype=dtype), prior=Q, tol=tol, max_iter=5000, grad="detach")
    ours, theirs = solve(C, a, b, fused=True, **kw), solve(C, a, b, fused=False, **kw)
    scale = 1e-7 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(ours.plan, theirs.plan, atol=scale * float(theirs.plan.max()), rtol=0)
    # potentials agree up to the constant that balanced OT leaves free: compare f_i + g_j
    pair = (lambda r: r.f[:, :, None] + r.g[:, None, :])
    torch.testing.assert_close(pair(ours), pair(theirs), atol=scale * 10, rtol=0)
    assert ours.converged.all() and (ours.error <= tol).all()


def test_fixed_number_of_plain_updates_equals_the_pytorch_path():
    C, a, b, _ = problems(3, 40, 20)
    kw = dict(eps=0.4, tol=None, max_iter=7, grad="detach")
    ours, theirs = solve(C, a, b, fused=True, **kw), solve(C, a, b, fused=False, **kw)
    assert (ours.n_iter == 7).all()
    torch.testing.assert_close(ours.g, theirs.g, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours.error, theirs.error, atol=1e-13, rtol=1e-9)


def test_each_problem_of_a_batch_as_if_alone():
    # one problem per thread, each to its own tolerance: the batch changes nothing, bit for bit
    C, a, b, _ = problems(9, 50, 30, dtype=torch.float32)
    eps = torch.linspace(0.2, 2.0, 9)
    batch = solve(C, a, b, eps=eps, tol=1e-6, grad="detach", fused=True)
    assert len(set(batch.n_iter.tolist())) > 1
    for k in range(9):
        alone = solve(C[k], a[k], b[k], eps=float(eps[k]), tol=1e-6, grad="detach", fused=True)
        assert torch.equal(alone.plan, batch.plan[k]) and torch.equal(alone.g, batch.g[k])
        assert int(alone.n_iter) == int(batch.n_iter[k])


def test_thread_count_changes_nothing():
    C, a, b, _ = problems(6, 33, 17)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = solve(C, a, b, eps=0.5, tol=1e-9, grad="detach", fused=True)
    finally:
        torch.set_num_threads(threads)
    two = solve(C, a, b, eps=0.5, tol=1e-9, grad="detach", fused=True)
    assert torch.equal(one.plan, two.plan) and torch.equal(one.n_iter, two.n_iter)


def test_stops_at_the_first_iterate_within_tol():
    C, a, b, _ = problems(1, 40, 25)
    res = solve(C[0], a[0], b[0], eps=0.3, tol=1e-8, grad="detach", overrelax=False, fused=True)
    k = int(res.n_iter)
    col = (res.plan.sum(0) - b[0]).abs().sum()
    assert float(col) <= 1e-8 * (1 + 1e-6)  # the reported iterate's own column error
    torch.testing.assert_close(res.plan.sum(1), a[0], atol=1e-15, rtol=1e-12)  # rows fitted exactly
    with pytest.warns(OTConvergenceWarning):
        short = solve(C[0], a[0], b[0], eps=0.3, tol=1e-8, max_iter=k - 1, grad="detach", overrelax=False, fused=True)
    assert not bool(short.converged) and float(short.error) > 1e-8


def test_convergence_record_rows_are_the_errors_every_check_every_updates():
    C, a, b, _ = problems(3, 40, 25)
    eps = torch.tensor([0.2, 0.5, 3.0], dtype=torch.float64)
    res = solve(C, a, b, eps=eps, tol=1e-9, grad="detach", overrelax=False, check_every=4, fused=True)
    n = res.n_iter
    assert res.errors.shape == (math.ceil(int(n.max()) / 4), 3)
    torch.testing.assert_close(res.errors[-1], res.error, atol=0, rtol=0)
    for r in range(res.errors.shape[0]):
        steps = (r + 1) * 4
        fixed = solve(C, a, b, eps=eps, tol=None, max_iter=steps, grad="detach", fused=True)
        expected = torch.where(n >= steps, fixed.error, res.error)  # after its stop, a problem repeats its error
        torch.testing.assert_close(res.errors[r], expected, atol=1e-15, rtol=1e-9)


def test_warm_start_at_the_solution_takes_no_iteration():
    C, a, b, _ = problems(2, 30, 20)
    first = solve(C, a, b, eps=0.5, tol=1e-9, grad="detach", fused=True)
    again = solve(C, a, b, eps=0.5, tol=1e-9, grad="detach", init_g=first.g, fused=True)
    assert (again.n_iter == 0).all()
    torch.testing.assert_close(again.plan, first.plan, atol=1e-12, rtol=0)


def test_over_relaxation_saves_iterations():
    C, a, b, _ = problems(4, 60, 30)
    kw = dict(eps=0.1, tol=1e-9, max_iter=20000, grad="detach", fused=True)
    fast, plain = solve(C, a, b, **kw), solve(C, a, b, overrelax=False, **kw)
    assert (fast.n_iter < plain.n_iter).all()
    torch.testing.assert_close(fast.plan, plain.plan, atol=1e-9, rtol=0)


def test_out_of_range_raises_and_auto_falls_back_to_the_log_domain():
    C, a, b, _ = problems(2, 20, 10, dtype=torch.float32)
    with pytest.raises(FloatingPointError, match="sinkhorn_log"), warnings.catch_warnings():
        warnings.simplefilter("ignore", OTConvergenceWarning)
        solve(C * 50, a, b, eps=0.01, method="sinkhorn", grad="detach", fused=True)
    res = solve(C * 5, a, b, eps=0.1, grad="detach", max_iter=5000)  # past float32's safe range: log domain
    assert res.method == "sinkhorn_log" and torch.isfinite(res.plan).all()


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # POT's own, at the zero of a
def test_where_it_cannot_run_it_says_why():
    C, a, b, _ = problems(2, 20, 10)
    a0 = a.clone()
    a0[:, 0] = 0
    a0 = a0 / a0.sum(-1, keepdim=True)
    with pytest.raises(ValueError, match="a_i, b_j > 0"):
        solve(C, a0, b, eps=0.5, method="sinkhorn", grad="detach", fused=True)
    with pytest.raises(ValueError, match="autograd"):
        solve(C.requires_grad_(True), a, b, eps=0.5, method="sinkhorn", grad="implicit", fused=True)
    with pytest.raises(ValueError, match="balanced"):
        solve(C.detach(), a, eps=0.5, upper=torch.full((2, 10), 0.2, dtype=torch.float64), fused=True)
    # fused=False is always allowed, also where it changes nothing
    assert solve(C.detach(), a, b, eps=0.5, method="sinkhorn_log", fused=False).method == "sinkhorn_log"
    # zero marginals and graphs take the PyTorch path by default, with the same answer as POT
    res = solve(C.detach(), a0, b, eps=0.5, tol=1e-11, grad="detach")
    ref = pot.sinkhorn(a0[0].numpy(), b[0].numpy(), C[0].detach().numpy(), 0.5, stopThr=1e-13, numItermax=100000)
    np.testing.assert_allclose(res.plan[0].numpy(), ref, atol=1e-11)


def test_eligibility_follows_the_cache_budget():
    assert fused.working_set(512, 100, torch.float32) == (512 * 112 + 100 * 512) * 4
    C, a, b, _ = problems(1, 8, 8)
    from otcls.ot.problem import LinearProblem
    assert fused.eligible(LinearProblem.build(C, a, b, eps=1.0), "detach")
    big = LinearProblem.build(torch.zeros(1, 600, 600), torch.full((1, 600), 1 / 600), torch.full((1, 600), 1 / 600),
                              eps=1.0)
    assert fused.working_set(600, 600, torch.float32) > fused.CACHE_BYTES and not fused.eligible(big, "detach")
