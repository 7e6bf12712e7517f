"""Over-relaxed Sinkhorn and the blocked kernel products: same answers as the plain iteration and POT."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import solve
from otcls.ot.fixed_point import OMEGA_MAX, _optimal_omega, _refine_omega, iterate
from otcls.ot.products import Products

from .reference import random_problem


def points_problem(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 2, generator=g, dtype=torch.float64), torch.rand(n, 2, generator=g, dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return C / C.max(), a, a.clone()


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log"])
def test_overrelaxed_plan_equals_plain_and_pot_in_fewer_iterations(method):
    C, a, b = points_problem(200)
    kw = dict(eps=0.02, method=method, tol=1e-9, max_iter=100000, grad="detach")
    fast, plain = solve(C, a, b, **kw), solve(C, a, b, overrelax=False, **kw)
    assert fast.converged and plain.converged
    assert int(fast.n_iter) < 0.8 * int(plain.n_iter)
    ref = pot.bregman.sinkhorn_log(a.numpy(), b.numpy(), C.numpy(), 0.02, stopThr=1e-13, numItermax=100000)
    np.testing.assert_allclose(fast.plan.numpy(), ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(plain.plan.numpy(), ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast.plan.sum(0).numpy(), b.numpy(), atol=1e-9 * 2)


def test_no_overrelaxation_while_autograd_records_the_steps():
    C, a, b = points_problem(60, seed=1)
    c = C.clone().requires_grad_()
    kw = dict(eps=0.05, tol=1e-9, max_iter=10000)
    unrolled = solve(c, a, b, grad="autodiff", **kw)
    assert int(unrolled.n_iter) == int(solve(c, a, b, grad="autodiff", overrelax=False, **kw).n_iter)
    implicit = solve(c, a, b, grad="implicit", **kw)  # the fixed point only: relaxed
    assert int(implicit.n_iter) < int(unrolled.n_iter)
    torch.testing.assert_close(implicit.plan, unrolled.plan, atol=1e-10, rtol=0)


def test_no_overrelaxation_with_an_empty_column():
    C, a, b = random_problem(12, 5, 3)
    b = torch.cat([b[:-1], b.new_zeros(1)])
    b = b / b.sum()
    kw = dict(eps=0.1, tol=1e-9, max_iter=10000)
    assert int(solve(C, a, b, **kw).n_iter) == int(solve(C, a, b, overrelax=False, **kw).n_iter)


def test_optimal_omega_is_youngs():
    """omega* = 2 / (1 + sqrt(1 - mu^2)), in [1, OMEGA_MAX]."""
    expected = [1.0, 2 / 1.5, 2 / 1.1, OMEGA_MAX, OMEGA_MAX]
    omega = _optimal_omega(torch.tensor([0.0, 0.75, 0.99, 1.0, 1.5]))  # on the device (first estimate)
    torch.testing.assert_close(omega, torch.tensor(expected))
    np.testing.assert_allclose(_optimal_omega(np.array([0.0, 0.75, 0.99, 1.0, 1.5])), expected)  # host (checks)


def test_refined_omega_recovers_mu_from_the_sor_rate():
    """SOR with omega below omega* contracts at ((omega mu + sqrt(omega^2 mu^2 - 4 (omega - 1))) / 2)^2;
    from that rate over 10 steps the refinement recovers mu = 0.9 and moves to its omega*."""
    mu, w = 0.9, 1.2
    lam = ((w * mu + (w * w * mu * mu - 4 * (w - 1)) ** 0.5) / 2) ** 2
    omega = np.array([w, w, w])
    err = np.array([lam ** 10, lam ** 10, 2.0])  # after 10 steps, from 1
    seen = np.array([True, False, True])
    out = _refine_omega(omega, seen, np.log(err) / 10)
    star = 2 / (1 + (1 - mu * mu) ** 0.5)
    np.testing.assert_allclose(out, [star, w, 1.0])


def test_sor_on_a_linear_two_block_system_reaches_its_solution_faster():
    """x <- M y + c, y <- Mᵀ x + d (Gauss-Seidel, state y): the relaxed loop ends at the solution of the
    linear system in fewer steps than the plain one."""
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    M = U[:, :5] @ torch.diag(torch.linspace(0.3, 0.97, 5, dtype=torch.float64)) @ V.T  # (8, 5), sigma < 1
    c = torch.randn(2, 8, generator=g, dtype=torch.float64)
    d = torch.randn(2, 5, generator=g, dtype=torch.float64)
    x_prev = []

    def step(y):
        return (y @ M.T + c) @ M + d

    def relaxed(y, omega):
        x = y @ M.T + c
        if x_prev:
            x = torch.lerp(x_prev[0], x, omega)
        x_prev[:] = [x]
        return torch.lerp(y, x @ M + d, omega)

    def error(y):
        return (step(y) - y).abs().sum(-1)

    A = torch.eye(5, dtype=torch.float64) - M.T @ M
    star = torch.linalg.solve(A, (c @ M + d).T).T
    y0 = torch.zeros(2, 5, dtype=torch.float64)
    plain = iterate(step, y0, error, tol=1e-12, max_iter=10000, check_every=10)
    fast = iterate(step, y0, error, tol=1e-12, max_iter=10000, check_every=10, relaxed=relaxed)
    assert fast.converged.all() and plain.converged.all()
    assert (fast.n_iter < 0.6 * plain.n_iter).all()
    torch.testing.assert_close(fast.z, star, atol=1e-10, rtol=0)


@pytest.mark.parametrize("B,n,m", [(1, 2000, 30), (3, 512, 40), (1, 1001, 7), (9, 64, 5)])
def test_products_equal_dense_products(B, n, m):
    g = torch.Generator().manual_seed(n)
    K = torch.rand(B, n, m, generator=g, dtype=torch.float64)
    u, v = torch.rand(B, n, generator=g, dtype=torch.float64), torch.rand(B, m, generator=g, dtype=torch.float64)
    products = Products(K)
    ref_kv = np.einsum("bij,bj->bi", K.numpy(), v.numpy())
    ref_ktu = np.einsum("bij,bi->bj", K.numpy(), u.numpy())
    np.testing.assert_allclose(products.matvec(v).numpy(), ref_kv, rtol=1e-12)
    np.testing.assert_allclose(products.vecmat(u).numpy(), ref_ktu, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_overrelaxed_small_eps_log_domain_matches_pot(dtype):
    """eps 2e-3 on costs of scale 1 (log domain, re-absorbing as the scalings drift): SOR needs a small
    fraction of the plain iterations and ends at POT's plan."""
    C, a, b = points_problem(100, seed=3)
    tol = 1e-7 if dtype == torch.float64 else 1e-5
    kw = dict(eps=2e-3, tol=tol, max_iter=50000, grad="detach")
    fast = solve(C.to(dtype), a.to(dtype), b.to(dtype), **kw)
    plain = solve(C.to(dtype), a.to(dtype), b.to(dtype), overrelax=False, **kw)
    assert fast.method == "sinkhorn_log" and fast.converged and plain.converged
    assert int(fast.n_iter) < 0.25 * int(plain.n_iter)
    ref = pot.bregman.sinkhorn_log(a.numpy(), b.numpy(), C.numpy(), 2e-3, stopThr=1e-12, numItermax=200000)
    atol = 1e-8 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(fast.plan.double().numpy(), ref, atol=atol, rtol=0)


def test_bad_overrelax_is_rejected():
    C, a, b = random_problem(5, 3, 9)
    with pytest.raises(ValueError, match="overrelax must be True or False"):
        solve(C, a, b, eps=0.1, overrelax="no")
