"""Bad input gets a specific ValueError."""
import pytest
import torch

from otcls.ot import barycenter, solve

C = torch.rand(4, 3)
A = torch.full((4,), 0.25)
B = torch.full((3,), 1 / 3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(cost=torch.rand(4), a=A, b=B), "cost must have shape"),
    (dict(cost=C, a=torch.full((5,), 0.2), b=B), "a has shape"),
    (dict(cost=C, a=A, b=torch.full((4,), 0.25)), "b has shape"),
    (dict(cost=C.clone().fill_(float("nan")), a=A, b=B), "cost contains NaN"),
    (dict(cost=C, a=torch.tensor([0.5, 0.5, 0.5, -0.5]), b=B), "a has negative"),
    (dict(cost=C, a=torch.tensor([0.25, 0.25, float("inf"), 0.25]), b=B), "a contains NaN or inf"),
    (dict(cost=C, a=A, b=torch.full((3,), 0.5)), "sum\\(a\\) == sum\\(b\\)"),
    (dict(cost=C, a=A, b=B, prior=-torch.ones(4, 3)), "prior Q has negative"),
    (dict(cost=C, a=A, b=B, prior=torch.ones(3, 3)), "prior Q has shape"),
    (dict(cost=C, a=A, b=B, prior=torch.tensor([[0.0] * 3] + [[1.0] * 3] * 3)), "all-zero row"),
    (dict(cost=C, a=A, lower=torch.full((3,), 0.5), upper=torch.full((3,), 0.4)), "lower > upper"),
    (dict(cost=C, a=A, lower=torch.full((3,), 0.4)), "sum\\(lower\\)"),
    (dict(cost=C, a=A, upper=torch.full((3,), 0.3)), "sum\\(upper\\)"),
    (dict(cost=C, a=A, b=B, lower=B), "not both"),
])
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve(eps=0.1, **kwargs)


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan")])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        solve(C, A, B, eps=eps)


def test_bad_method_and_options():
    with pytest.raises(ValueError, match="does not solve a balanced problem"):
        solve(C, A, B, eps=0.1, method="dbot_ascent")
    with pytest.raises(ValueError, match="grad must be one of"):
        solve(C, A, B, eps=0.1, grad="magic")
    with pytest.raises(ValueError, match="tol must be > 0"):
        solve(C, A, B, eps=0.1, tol=0.0)


def test_barycenter_bad_inputs():
    with pytest.raises(ValueError, match="same positive mass"):
        barycenter(torch.tensor([[0.5, 0.5], [1.0, 1.0]]), torch.zeros(2, 2), eps=0.1)
    with pytest.raises(ValueError, match="weights must be"):
        barycenter(torch.tensor([[0.5, 0.5], [0.2, 0.8]]), torch.zeros(2, 2), eps=0.1, weights=[0.9, 0.9])


def test_barycenter_prior_with_dead_column_is_infeasible():
    hists = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    prior = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="all-zero column"):
        barycenter(hists, torch.zeros(2, 2, dtype=torch.float64), eps=0.1, prior=prior)


def test_infeasible_prior_support_is_named_not_just_slow():
    # every row and column of Q has a positive entry, but rows 0-1 can only reach column 0, which takes 1/3:
    # no coupling with a = 1/3 each, b = 1/3 each lives on Q's support
    Q = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    a = b = torch.full((3,), 1 / 3, dtype=torch.float64)
    with pytest.warns(Warning), pytest.raises(ValueError, match="prior Q .* is infeasible"):
        solve(torch.zeros(3, 3, dtype=torch.float64), a, b, eps=1.0, prior=Q, max_iter=200)
    # float32, eps 0.1: the range bound picks the scaling domain, whose iterates then diverge; still named
    C = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))
    Q6 = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 1.0, 1.0]] * 2)
    with pytest.warns(Warning), pytest.raises(ValueError, match="prior Q .* is infeasible"):
        solve(C, torch.full((6,), 1 / 6), torch.full((3,), 1 / 3), eps=0.1, prior=Q6)
    # a feasible zero pattern converges as before
    ok = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    assert bool(solve(torch.zeros(3, 3, dtype=torch.float64), a, b, eps=1.0, prior=ok).converged)
