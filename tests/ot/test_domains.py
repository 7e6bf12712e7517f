"""Scaling vs log domain: the automatic choice at the edge of the safe range, float32, chunked batches,
early-converged problems, and gradients across domains; references are POT, cvxpy and the log solvers."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import LinearProblem, solve
from otcls.ot.domain import scaling_margin

from .reference import entropic_dbot_cvxpy, random_problem

PAIRS = {"balanced": ("sinkhorn", "sinkhorn_log"), "bounded": ("dbot_ascent_scaling", "dbot_ascent")}


def edge_problem(dtype, offset, kind, n=30, m=8, eps=0.5, seed=0):
    """A cost whose scaling margin is ``-offset``: column 0 costs ``R·eps`` for every row (the
    scaling that feeds it is the largest possible), every row has a zero entry."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.5
    a, b = (a / a.sum()).to(dtype), (b / b.sum()).to(dtype)
    kw = dict(b=b) if kind == "balanced" else dict(lower=0.9 * b, upper=1.1 * b)
    R = float(scaling_margin(LinearProblem.build(torch.zeros(n, m, dtype=dtype), a, eps=eps, **kw))) + offset
    C = torch.rand(n, m, generator=g, dtype=torch.float64) * R * eps
    C[:, 0] = R * eps
    C[torch.arange(n), 1 + torch.arange(n) % (m - 1)] = 0.0
    return C.to(dtype), a, kw, eps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["balanced", "bounded"])
def test_auto_choice_at_the_edge_of_the_safe_range(dtype, kind):
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for offset, expected in ((-0.05, PAIRS[kind][0]), (0.05, PAIRS[kind][1])):
        C, a, kw, eps = edge_problem(dtype, offset, kind)
        margin = scaling_margin(LinearProblem.build(C, a, eps=eps, **kw))
        assert abs(float(margin) + offset) < 1e-3
        res = solve(C, a, eps=eps, tol=tol, max_iter=20000, **kw)
        assert res.method == expected
        # just inside the range the scaling domain still gives the log-domain plan, without NaN
        inside = solve(C, a, eps=eps, tol=tol, max_iter=20000, method=PAIRS[kind][0], **kw) if offset < 0 else res
        ref = solve(C, a, eps=eps, tol=tol, max_iter=20000, method=PAIRS[kind][1], **kw)
        assert torch.isfinite(inside.plan).all() and torch.isfinite(inside.f).all() and torch.isfinite(inside.g).all()
        torch.testing.assert_close(inside.plan, ref.plan, atol=20 * tol / len(a), rtol=0)
        torch.testing.assert_close(inside.plan.sum(1), a, atol=10 * tol, rtol=0)


def test_auto_is_scaling_for_moderate_eps_and_log_for_small_eps():
    C, a, b = random_problem(20, 10, 1)
    assert solve(C, a, b, eps=0.05).method == "sinkhorn"
    assert solve(C, a, b, eps=1e-3, tol=1e-4, max_iter=20000).method == "sinkhorn_log"  # R = 1000 > 354
    assert solve(C.float(), a.float(), b.float(), eps=0.02, tol=1e-5).method == "sinkhorn_log"  # R = 50 > 43.7
    assert solve(C, a, lower=0.9 * b, upper=1.1 * b, eps=0.05).method == "dbot_ascent_scaling"


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log"])
def test_float32_matches_pot_in_float64(method):
    C, a, b = random_problem(40, 12, 2)
    ref = pot.sinkhorn(a.numpy(), b.numpy(), C.numpy(), 0.05, stopThr=1e-14, numItermax=100000)
    res = solve(C.float(), a.float(), b.float(), eps=0.05, method=method, tol=1e-6, max_iter=10000)
    assert res.plan.dtype == torch.float32 and res.converged
    np.testing.assert_allclose(res.plan.double().numpy(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["dbot_ascent_scaling", "dbot_ascent"])
def test_float32_dbot_matches_cvxpy(method):
    C, a, b = random_problem(30, 6, 3)
    lower, upper = 0.8 * b, 1.2 * b
    ref = entropic_dbot_cvxpy(C.numpy(), a.numpy(), lower.numpy(), upper.numpy(), 0.5)
    res = solve(C.float(), a.float(), lower=lower.float(), upper=upper.float(), eps=0.5, method=method, tol=1e-6)
    assert res.plan.dtype == torch.float32 and res.converged
    np.testing.assert_allclose(res.plan.double().numpy(), ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("kind", ["balanced", "bounded"])
def test_chunked_batch_equals_unchunked_and_pot(kind):
    C, a, b = random_problem(24, 7, 4, batch=9)
    eps = torch.linspace(0.03, 1.0, 9, dtype=torch.float64)
    kw = dict(b=b) if kind == "balanced" else dict(lower=0.8 * b, upper=1.2 * b)
    whole = solve(C, a, eps=eps, tol=1e-10, max_iter=20000, chunk_size=9, **kw)
    chunked = solve(C, a, eps=eps, tol=1e-10, max_iter=20000, chunk_size=2, **kw)
    torch.testing.assert_close(chunked.plan, whole.plan, atol=1e-14, rtol=0)
    assert torch.equal(chunked.n_iter, whole.n_iter) and chunked.method == whole.method
    if kind == "balanced":
        for k in range(9):
            ref = pot.sinkhorn(a[k].numpy(), b[k].numpy(), C[k].numpy(), float(eps[k]), stopThr=1e-13,
                               numItermax=100000)
            np.testing.assert_allclose(chunked.plan[k].numpy(), ref, atol=1e-8, rtol=0)


def test_batch_mixing_domains_solves_each_problem_in_its_own():
    C, a, b = random_problem(15, 6, 5, batch=4)
    eps = torch.tensor([0.5, 1e-3, 0.1, 2e-3], dtype=torch.float64)
    res = solve(C, a, b, eps=eps, tol=1e-7, max_iter=50000, chunk_size=1)
    assert res.method == "sinkhorn+sinkhorn_log"
    for k in range(4):
        single = solve(C[k], a[k], b[k], eps=float(eps[k]), tol=1e-7, max_iter=50000)
        assert single.method == ("sinkhorn" if k % 2 == 0 else "sinkhorn_log")
        torch.testing.assert_close(res.plan[k], single.plan, atol=1e-14, rtol=0)
        ref = pot.bregman.sinkhorn_log(a[k].numpy(), b[k].numpy(), C[k].numpy(), float(eps[k]), stopThr=1e-9,
                                       numItermax=100000)
        np.testing.assert_allclose(res.plan[k].numpy(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log", "dbot_ascent_scaling"])
def test_early_converged_problem_is_frozen(method):
    """A problem that converges first keeps its state while the rest of its chunk iterates on."""
    C, a, b = random_problem(20, 6, 6, batch=2)
    eps = torch.tensor([2.0, 0.02], dtype=torch.float64)
    kw = dict(b=b) if method.startswith("sinkhorn") else dict(lower=0.9 * b, upper=1.1 * b)
    res = solve(C, a, eps=eps, method=method, tol=1e-9, max_iter=20000, **kw)
    alone = solve(C[:1], a[:1], eps=eps[:1], method=method, tol=1e-9, max_iter=20000,
                  **{k: v[:1] for k, v in kw.items()})
    assert res.n_iter[0] < res.n_iter[1]
    assert res.n_iter[0] == alone.n_iter[0]
    torch.testing.assert_close(res.plan[0], alone.plan[0], atol=1e-15, rtol=0)
    # its convergence record stops moving once it stopped
    last = int((res.errors[:, 0] <= 1e-9).nonzero()[0])
    assert torch.equal(res.errors[last:, 0], res.errors[last:last + 1, 0].expand(len(res.errors) - last))
    if method.startswith("sinkhorn"):
        ref = pot.sinkhorn(a[0].numpy(), b[0].numpy(), C[0].numpy(), 2.0, stopThr=1e-13)
        np.testing.assert_allclose(res.plan[0].numpy(), ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["balanced", "bounded"])
@pytest.mark.parametrize("grad", ["autodiff", "implicit"])
def test_gradients_equal_across_domains(kind, grad):
    C, a, b = random_problem(10, 5, 7)
    Q = torch.rand(10, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8)) + 0.2
    kw = dict(b=b) if kind == "balanced" else dict(lower=0.85 * b, upper=1.15 * b)
    w = torch.linspace(-1, 1, 50, dtype=torch.float64).reshape(10, 5)
    grads = []
    for method in PAIRS[kind]:
        c, q = C.clone().requires_grad_(), Q.clone().requires_grad_()
        res = solve(c, a, eps=0.1, prior=q, method=method, grad=grad, tol=1e-12, max_iter=20000, **kw)
        ((w * res.plan).sum() + (res.plan ** 2).sum() + res.f.sum()).backward()
        grads.append((c.grad, q.grad))
    for g_scaling, g_log in zip(*grads):
        torch.testing.assert_close(g_scaling, g_log, atol=1e-9, rtol=1e-7)


def test_bad_chunk_size():
    C, a, b = random_problem(5, 3, 9)
    with pytest.raises(ValueError, match="chunk_size"):
        solve(C, a, b, eps=0.1, chunk_size=0)


@pytest.mark.parametrize("grad", ["autodiff", "implicit"])
def test_chunked_gradients_equal_unchunked_and_finite_differences(grad):
    C, a, b = random_problem(8, 4, 10, batch=5)
    w = torch.linspace(-1, 1, 5 * 8 * 4, dtype=torch.float64).reshape(5, 8, 4)

    def loss(cost, chunk):
        plan = solve(cost, a, b, eps=0.3, grad=grad, tol=1e-12, max_iter=20000, chunk_size=chunk).plan
        return (w * plan).sum() + (plan ** 2).sum()

    grads = []
    for chunk in (5, 2):
        c = C.clone().requires_grad_()
        loss(c, chunk).backward()
        grads.append(c.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-12, rtol=0)
    d = torch.randn(C.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        fd = (loss(C + 1e-6 * d, 2) - loss(C - 1e-6 * d, 2)) / 2e-6
    torch.testing.assert_close((grads[1] * d).sum(), fd, atol=1e-7, rtol=1e-6)
