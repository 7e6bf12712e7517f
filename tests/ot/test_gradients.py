"""Gradient modes: unrolled autodiff (gradcheck), implicit differentiation, detach."""
import pytest
import torch

from otcls.ot import solve

from .reference import random_problem


def _loss_of(plan):
    w = torch.linspace(-1, 1, plan.numel(), dtype=plan.dtype).reshape(plan.shape)
    return (w * plan).sum() + (plan ** 2).sum()


@pytest.mark.parametrize("kind", ["balanced", "bounded", "semi"])
def test_autodiff_gradcheck(kind):
    C, a, b = random_problem(4, 3, 31)
    Q = torch.rand(4, 3, dtype=torch.float64) + 0.5
    kw = dict(b=b) if kind == "balanced" else dict(lower=0.8 * b, upper=1.2 * b) if kind == "bounded" else {}

    def f(cost, prior):
        return solve(cost, a, eps=0.5, prior=prior, tol=None, max_iter=30, grad="autodiff", **kw).plan

    assert torch.autograd.gradcheck(f, (C.clone().requires_grad_(), Q.clone().requires_grad_()))


@pytest.mark.parametrize("kind,method", [("balanced", "sinkhorn_log"), ("balanced", "sinkhorn"),
                                         ("bounded", "dbot_ascent"), ("bounded", "dbot_ascent_scaling"),
                                         ("bounded", "dbot_three_scaling")])
def test_implicit_gradient_equals_unrolled_at_convergence(kind, method):
    C, a, b = random_problem(9, 5, 32)
    kw = dict(b=b) if kind == "balanced" else dict(lower=0.85 * b, upper=1.15 * b)
    grads = []
    for grad in ("autodiff", "implicit"):
        c = C.clone().requires_grad_()
        res = solve(c, a, eps=0.2, tol=1e-12, max_iter=5000, grad=grad, method=method, **kw)
        _loss_of(res.plan).backward()
        grads.append(c.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-8, rtol=1e-6)


def test_implicit_gradient_in_batch_and_float32():
    C, a, b = random_problem(64, 10, 33, dtype=torch.float32, batch=8)
    c = C.clone().requires_grad_()
    res = solve(c, a, lower=0.5 * b, upper=1.5 * b, eps=0.1, grad="implicit", tol=1e-6)
    res.plan.sum(-1).log().sum().backward()
    assert torch.isfinite(c.grad).all()


def test_implicit_does_not_keep_iterations_in_graph():
    C, a, b = random_problem(30, 8, 34)
    c = C.clone().requires_grad_()
    # plain steps: more iterations than the graph may have nodes
    res = solve(c, a, b, eps=0.05, grad="implicit", tol=1e-10, max_iter=5000, overrelax=False)
    assert res.n_iter.item() > 50
    # the graph behind the plan has the size of one iteration, not n_iter
    seen, stack = set(), [res.plan.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    assert len(seen) < 60


@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn"])
def test_detach_has_no_graph_and_same_values(method):
    C, a, b = random_problem(15, 6, 35)
    a[2], b[1] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    res = solve(C.clone().requires_grad_(), a, b, eps=0.1, grad="detach", method=method, tol=1e-10)
    ref = solve(C.clone().requires_grad_(), a, b, eps=0.1, grad="autodiff", method=method, tol=1e-10)
    assert not res.plan.requires_grad
    torch.testing.assert_close(res.plan, ref.plan.detach(), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(res.f[a > 0], ref.f.detach()[a > 0], atol=1e-9, rtol=0)
    assert res.plan[2].sum() == 0 and res.plan[:, 1].sum() == 0


def test_gradients_finite_with_zero_masses_and_small_eps():
    C, a, b = random_problem(12, 6, 36)
    a[0], b[2] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    for grad in ("autodiff", "implicit"):
        c = C.clone().requires_grad_()
        res = solve(c, a, b, eps=0.01, grad=grad, tol=1e-8, max_iter=3000)
        _loss_of(res.plan).backward()
        assert torch.isfinite(c.grad).all()
