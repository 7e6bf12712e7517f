"""The solve of one small balanced problem with a gradient (otcls.ot.single): POT's autodiff, the generic path."""
import numpy as np
import pytest
import torch

from otcls.ot import single, solve
from otcls.ot.problem import LinearProblem

ot = pytest.importorskip("ot")


def logits_problem(n=96, m=12, seed=0, dtype=torch.float64):
    """Training-loss shape in small: cost = -logits, uniform rows, a long-tailed column marginal."""
    g = torch.Generator().manual_seed(seed)
    z = 1.5 * torch.randn(n, m, generator=g, dtype=torch.float64)
    z[torch.arange(n), torch.randint(0, m, (n,), generator=g)] += 4.0
    b = 20.0 ** (-torch.arange(m, dtype=torch.float64) / (m - 1))
    G = torch.randn(n, m, generator=g, dtype=torch.float64)
    return z.to(dtype), torch.full((n,), 1.0 / n, dtype=dtype), (b / b.sum()).to(dtype), G.to(dtype)


def _grad(z, fn):
    z = z.clone().requires_grad_()
    fn(z).backward()
    return z.grad


def _generic(monkeypatch):
    monkeypatch.setattr(single, "ENABLED", False)


def test_training_shape_takes_the_single_path():
    z, a, b, _ = logits_problem()
    p = LinearProblem.build(-z.clone().requires_grad_(), a, b, eps=1.0)
    assert single.eligible(p, "autodiff") and single.eligible(p, "implicit")
    assert not single.eligible(p, "detach")
    assert not single.eligible(LinearProblem.build(-z, a, b, eps=1.0), "autodiff")  # nothing requires grad
    batch = LinearProblem.build(-z.clone().requires_grad_().expand(2, -1, -1), a, b, eps=1.0)
    assert not single.eligible(batch, "autodiff")
    a0 = a.clone()
    a0[0] = 0.0
    assert not single.eligible(LinearProblem.build(-z.clone().requires_grad_(), a0 / a0.sum(), b, eps=1.0), "autodiff")


@pytest.mark.parametrize("grad", ["autodiff", "implicit"])
def test_gradient_through_the_plan_equals_pot_autodiff(grad):
    # POT's ot.sinkhorn on torch tensors, autograd through its iterations, converged far below the tolerance
    z, a, b, G = logits_problem()
    ref = _grad(z, lambda x: (G * ot.sinkhorn(a, b, -x, 1.0, stopThr=1e-15, numItermax=100000)).sum())
    ours = _grad(z, lambda x: (G * solve(-x, a, b, eps=1.0, tol=1e-13, max_iter=100000, grad=grad).plan).sum())
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-8


def test_float32_unrolled_gradient_equals_pot_float32_at_the_same_iterations():
    z, a, b, G = logits_problem(dtype=torch.float32)
    ref = _grad(z, lambda x: (G * ot.sinkhorn(a, b, -x, 1.0, stopThr=0.0, numItermax=80, warn=False)).sum())
    ours = _grad(z, lambda x: (G * solve(-x, a, b, eps=1.0, tol=None, max_iter=80, grad="autodiff").plan).sum())
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-5


@pytest.mark.parametrize("grad", ["autodiff", "implicit"])
@pytest.mark.parametrize("with_prior", [False, True])
def test_values_and_gradients_equal_the_generic_path(monkeypatch, grad, with_prior):
    z, a, b, G = logits_problem(40, 7, seed=3)
    prior = torch.rand(40, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.2 \
        if with_prior else None
    w_f, w_g = torch.linspace(-1, 1, 40, dtype=torch.float64), torch.linspace(0, 2, 7, dtype=torch.float64)

    def run():
        x = z.clone().requires_grad_()
        res = solve(-x, a, b, eps=0.7, prior=prior, tol=1e-12, max_iter=5000, grad=grad)
        # plan, each potential alone (their gauge: the column potential's mean held fixed) and f_i + g_j
        loss = (G * res.plan).sum() + (w_f * res.f).sum() + (w_g * res.g).sum() \
            + (res.f[:, None] + res.g[None, :]).square().mean()
        loss.backward()
        return res, x.grad

    fast, g_fast = run()
    _generic(monkeypatch)
    slow, g_slow = run()
    torch.testing.assert_close(fast.plan, slow.plan, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(fast.f, slow.f, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.g, slow.g, atol=1e-9, rtol=0)
    torch.testing.assert_close(g_fast, g_slow, atol=1e-8, rtol=1e-7)
    assert fast.method == slow.method == "sinkhorn"


def test_fixed_iterations_match_the_generic_unrolled_path(monkeypatch):
    # tol=None (a fixed-k loss): the same k plain steps, the same unrolled derivative, not the fixed point's
    z, a, b, G = logits_problem(30, 5, seed=5)
    run = lambda: _grad(z, lambda x: (G * solve(-x, a, b, eps=0.5, tol=None, max_iter=7, grad="autodiff").plan).sum())
    fast = run()
    _generic(monkeypatch)
    torch.testing.assert_close(fast, run(), atol=1e-12, rtol=1e-10)


def test_iterations_and_record_equal_the_generic_path(monkeypatch):
    z, a, b, _ = logits_problem(50, 6, seed=6)
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(single, "ENABLED", enabled)
        for grad in ("autodiff", "implicit"):
            res = solve(-z.clone().requires_grad_(), a, b, eps=1.0, tol=1e-9, grad=grad)
            out.append((int(res.n_iter), res.errors.shape, float(res.error)))
    assert [o[:2] for o in out[:2]] == [o[:2] for o in out[2:]]
    assert all(o[2] <= 1e-9 for o in out)


def test_second_derivative_as_the_generic_path():
    z, a, b, _ = logits_problem(5, 3, seed=7)
    w = torch.arange(15.0, dtype=torch.float64).reshape(5, 3)

    def f(x):
        res = solve(-x, a, b, eps=0.5, tol=None, max_iter=30, grad="autodiff")
        return (w * res.plan).sum() + res.f[1]

    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_float32_gradients_close_to_float64():
    z, a, b, G = logits_problem()
    ref = _grad(z, lambda x: (G * solve(-x, a, b, eps=1.0, tol=1e-12, max_iter=10000, grad="implicit").plan).sum())
    z32, a32, b32, G32 = (t.float() for t in (z, a, b, G))
    for grad in ("autodiff", "implicit"):
        got = _grad(z32, lambda x: (G32 * solve(-x, a32, b32, eps=1.0, tol=1e-6, grad=grad).plan).sum()).double()
        assert np.isfinite(got.numpy()).all()
        assert float((got - ref).abs().max() / ref.abs().max()) < 1e-3
