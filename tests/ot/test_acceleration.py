"""Over-relaxed Sinkhorn and the blocked kernel products: same answers as the plain iteration and POT."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import solve
from otcls.ot.fixed_point import OMEGA_MAX, _relaxation, iterate
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


def test_relaxation_rule():
    """omega = 2 / (2 - 1.5 rho), in [1, OMEGA_MAX]."""
    omega = _relaxation(torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0])).squeeze(-1)
    expected = torch.tensor([1.0, 2 / 1.7, 2 / 1.25, OMEGA_MAX, OMEGA_MAX])
    torch.testing.assert_close(omega, expected)


def test_relaxed_linear_iteration_reaches_the_same_fixed_point_faster():
    """On z -> J z + c with J's eigenvalues in [0.05, 0.9], the relaxed loop ends at (I - J)^-1 c."""
    g = torch.Generator().manual_seed(0)
    Qm, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    J = Qm @ torch.diag(torch.linspace(0.05, 0.9, 6, dtype=torch.float64)) @ Qm.T
    c = torch.randn(3, 6, generator=g, dtype=torch.float64)

    def step(z):
        return z @ J.T + c

    def error(z):
        return (step(z) - z).abs().sum(-1)

    star = torch.linalg.solve(torch.eye(6, dtype=torch.float64) - J, c.T).T
    z0 = torch.zeros(3, 6, dtype=torch.float64)
    plain = iterate(step, z0, error, tol=1e-12, max_iter=10000, check_every=10)
    fast = iterate(step, z0, error, tol=1e-12, max_iter=10000, check_every=10, relax=True)
    assert fast.converged.all() and plain.converged.all()
    assert (fast.n_iter < plain.n_iter).all()
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
