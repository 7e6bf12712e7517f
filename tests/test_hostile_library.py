"""Hostile but fair inputs to the library entry points: each either gives the right answer (checked against an
independent reference) or a clear error naming what was wrong and what to do."""
import warnings

import numpy as np
import pytest
import torch
from scipy.special import softmax

from otcls.ot import OTConvergenceWarning, OTNumericalError, OTResult, solve
from otcls.ot.fixed_point import iterate
from otcls.ot.problem import LinearProblem
from otcls.ot.sinkhorn import sinkhorn_log
from otcls.ot.solve import _raise_if_plan_broken

torch.manual_seed(0)
C = torch.rand(8, 5)
A = torch.full((8,), 1 / 8)
B = torch.full((5,), 1 / 5)


# ---------------------------------------------------------------- solver: eps and |C|/eps beyond the dtype

@pytest.mark.parametrize("dtype,eps", [(torch.float32, 1e-45), (torch.float64, 1e-320)])
def test_subnormal_eps_refused_up_front(dtype, eps):
    for kw in (dict(b=B.to(dtype)), dict(lower=0.8 * B.to(dtype), upper=1.2 * B.to(dtype)), {}):
        with pytest.raises(OTNumericalError, match="below the smallest normal"):
            solve(C.to(dtype), A.to(dtype), eps=eps, max_iter=10, **kw)


@pytest.mark.parametrize("scale,eps,kw", [
    (1e10, 0.5, dict(lower=0.8 * B, upper=1.2 * B)),   # DB-OT: the plan summed to 1.96
    (1e30, 0.5, dict(b=B)),                             # balanced: inf entries
    (1.0, 1e-10, dict(b=B)),                            # balanced: inf entries
])
def test_unresolvable_cost_over_eps_refused(scale, eps, kw):
    with pytest.raises(OTNumericalError, match=r"exceeds what torch.float32 resolves.*use float64"):
        solve(C * scale, A, eps=eps, **kw)


def test_numerical_error_is_a_value_error():
    # callers that catch bad input (ValueError) or the scaling solvers' range errors catch it too
    assert issubclass(OTNumericalError, ValueError) and issubclass(OTNumericalError, FloatingPointError)


def test_resolvable_float64_is_not_refused():
    # the |C|/eps that float32 refuses is within float64's precision: the problem is built, not refused
    with pytest.raises(OTNumericalError):
        LinearProblem.build(C * 1e10, A, B, eps=0.5)
    p = LinearProblem.build((C * 1e10).double(), A.double(), B.double(), eps=0.5)
    assert p.kind == "balanced"


class _AlwaysOutOfRange:
    """A guard whose steps always leave the range: the careful replay cannot help."""
    careful = False

    def probe(self, z, err):
        return torch.ones(1)

    def settle(self, values):
        self.careful = True
        return False


def test_iterate_stops_when_the_careful_replay_fails_too():
    calls = []

    def step(z):
        calls.append(1)
        return z + 1

    with pytest.raises(OTNumericalError, match="max_iter=10"):
        iterate(step, torch.zeros(1, 3), lambda z: z.sum(-1), tol=1e-6, max_iter=10, check_every=5,
                guard=_AlwaysOutOfRange())
    assert len(calls) <= 2 * 10  # one replay of one stretch, never an endless loop


def test_log_domain_sinkhorn_bounded_even_past_the_entry_check():
    # a problem built without LinearProblem.build's checks: eps = 1e-45 makes -C/eps -inf; max_iter bounds it
    p = LinearProblem(cost=C[None], a=A[None], b=B[None], eps=torch.full((1, 1), 1e-45))
    with pytest.raises(OTNumericalError, match="leave the range"):
        sinkhorn_log(p, beta0=torch.zeros(1, 5), tol=1e-6, max_iter=10, check_every=10, grad="detach")


# ---------------------------------------------------------------- solver: semi-relaxed at tiny eps

@pytest.mark.parametrize("eps", [1e-2, 1e-6, 1e-8])
@pytest.mark.parametrize("with_prior", [False, True])
def test_semi_relaxed_rows_exact_at_any_eps(eps, with_prior):
    g = torch.Generator().manual_seed(1)
    cost = torch.rand(64, 10, generator=g) * 20
    a = torch.full((64,), 1 / 64)
    prior = torch.rand(64, 10, generator=g) + 0.1 if with_prior else None
    r = solve(cost, a, eps=eps, prior=prior)
    z = -cost.double().numpy() / eps + (0 if prior is None else np.log(prior.double().numpy()))
    ref = softmax(z, axis=1) / 64  # float64 closed form (scipy shifts by the row max)
    assert torch.isfinite(r.plan).all()
    assert torch.allclose(r.plan.sum(1), a, rtol=1e-5, atol=0)
    np.testing.assert_allclose(r.plan.double().numpy(), ref, atol=1e-6)
    # the potential f_i = eps * log(a_i / sum_j Q_ij exp(-C_ij / eps)) in float64
    f_ref = eps * (np.log(1 / 64) - np.logaddexp.reduce(z, axis=1))
    np.testing.assert_allclose(r.f.double().numpy(), f_ref, rtol=1e-5, atol=1e-6 * 20)


def test_semi_relaxed_gradient_unchanged_by_the_shift():
    cost = torch.rand(6, 4, dtype=torch.float64, requires_grad=True)
    a = torch.full((6,), 1 / 6, dtype=torch.float64)
    r = solve(cost, a, eps=0.3)
    (r.plan * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    ref_cost = cost.detach().clone().requires_grad_(True)
    plan = torch.softmax(-ref_cost / 0.3, dim=1) * a[:, None]
    (plan * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    assert torch.allclose(cost.grad, ref_cost.grad, atol=1e-12)


# ---------------------------------------------------------------- solver: broken plans after failed solves

def _result(plan, converged=False):
    one = torch.ones(1)
    return OTResult(plan=plan, f=torch.zeros(1, plan.shape[-2]), g=torch.zeros(1, plan.shape[-1]),
                    n_iter=one.long(), error=one, converged=torch.tensor([converged]), errors=one[None],
                    method="test", cost=torch.zeros_like(plan))


def test_broken_plan_raises_naming_the_fault():
    p = LinearProblem.build(C, A, B, eps=0.5)
    inf_plan = (A[:, None] * B[None, :])[None].clone()
    inf_plan[0, 2, 3] = float("inf")
    with pytest.raises(OTNumericalError, match="inf/NaN entries.*raise eps"):
        _raise_if_plan_broken(p, _result(inf_plan), tol=1e-6)
    off = (A[:, None] * B[None, :])[None] * 1.96
    with pytest.raises(OTNumericalError, match="row sums off by 96.0% of the mass"):
        _raise_if_plan_broken(p, _result(off), tol=1e-6)


def test_slow_but_sound_plan_only_warns():
    # rows met, columns not yet: a convergence warning, no error (more iterations would help)
    with pytest.warns(OTConvergenceWarning, match="did not converge"):
        r = solve(C * 1e4, A, B, eps=0.5, max_iter=50)
    assert torch.allclose(r.plan.sum(1), A, rtol=1e-3)


# ---------------------------------------------------------------- losses: label dtypes, bad inputs

from otcls.losses import LOSSES, build_loss  # noqa: E402

COUNTS = [100, 50, 20, 10, 5]
CONTRASTIVE = ("nt_xent", "supcon", "reot_contrastive")
INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32]


def _loss_inputs(name):
    g = torch.Generator().manual_seed(3)
    y = torch.tensor([1, 2, 3, 4, 1])  # uint8 1s: as a mask they would pick rows, not class 1
    if name in CONTRASTIVE:
        return (torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)), y
    return (torch.randn(5, 5, generator=g),), y


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_integer_label_dtype_gives_the_int64_loss(name, dtype):
    loss = build_loss(name, num_classes=5, class_counts=COUNTS)
    x, y = _loss_inputs(name)
    ref = loss(*x, y)
    assert torch.isfinite(ref)
    assert torch.equal(loss(*x, y.to(dtype)), ref)


def test_class_balanced_ce_with_uint8_labels_matches_the_weighted_ce_by_hand():
    # class-balanced weights (Cui et al.): w_j ∝ (1 - beta) / (1 - beta^n_j), normalised to sum to C
    loss = build_loss("cb_ce", num_classes=5, class_counts=COUNTS)
    (z,), y = _loss_inputs("cb_ce")
    n = torch.tensor(COUNTS, dtype=torch.float64)
    w = (1 - 0.9999) / (1 - 0.9999 ** n)
    w = w * 5 / w.sum()
    nll = torch.nn.functional.cross_entropy(z.double(), y, reduction="none")
    assert torch.allclose(loss(z, y.to(torch.uint8)).double(), (w[y] * nll).mean(), atol=1e-6)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("bad,match", [
    (torch.tensor([1.0, 2.0, 3.0, 4.0, 1.0]), "integer class indices.*got dtype torch.float32"),
    (torch.tensor([True, False, True, False, True]), "integer class indices.*got dtype torch.bool"),
    ([1, 2, 3, 4, 1], "must be a torch tensor"),
])
def test_non_integer_labels_raise(name, bad, match):
    loss = build_loss(name, num_classes=5, class_counts=COUNTS)
    x, _ = _loss_inputs(name)
    if name == "nt_xent":
        return  # labels are ignored by NT-Xent
    with pytest.raises(ValueError, match=match):
        loss(*x, bad)


@pytest.mark.parametrize("name", sorted(set(LOSSES.names()) - set(CONTRASTIVE)))
def test_integer_logits_raise(name):
    loss = build_loss(name, num_classes=5, class_counts=COUNTS)
    with pytest.raises(ValueError, match="logits must be a floating-point torch tensor"):
        loss(torch.ones(5, 5, dtype=torch.long), torch.tensor([1, 2, 3, 4, 1]))


@pytest.mark.parametrize("value,word", [(-float("inf"), "-inf"), (float("inf"), r"\+inf"), (float("nan"), "NaN")])
def test_dbot_non_finite_logit_named_as_such(value, word):
    (z,), y = _loss_inputs("dbot")
    z[0, 3] = value
    with pytest.raises(ValueError, match=rf"dbot: 1 logit\(s\) are {word} \(in 1 of 5 rows"):
        build_loss("dbot", num_classes=5, class_counts=COUNTS)(z, y)


# ---------------------------------------------------------------- TransportHead.predict / ot_scores

import ot as pot  # noqa: E402

from otcls.heads import TransportHead  # noqa: E402
from otcls.inference import ot_scores, reverse_prior  # noqa: E402
from otcls.inference.scores import SmallCouplingWarning  # noqa: E402

TRAIN = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
REVERSE = reverse_prior(TRAIN)


def _head():
    return TransportHead(8, 5, loss="ce", class_counts=COUNTS)


def _pot_scores(z, b, eps):
    n = z.shape[0]
    return pot.sinkhorn(np.full(n, 1 / n), b.numpy(), -z.double().numpy(), reg=eps, stopThr=1e-12,
                        numItermax=100000) * n


def test_single_row_falls_back_to_the_prior_shift_with_a_warning():
    z = torch.tensor([[10.0, 0.0, 1.0, -1.0, 0.5]])
    with pytest.warns(SmallCouplingWarning, match="1 row\\(s\\), fewer than min_rows=5"):
        scores = _head().predict_scores(z, "reot", "reverse")
    ref = softmax(z.double().numpy() + np.log(REVERSE.numpy()) - np.log(TRAIN.numpy()), axis=1)
    np.testing.assert_allclose(scores.double().numpy(), ref, atol=1e-6)
    # the coupling of one row would have copied the prior (argmax of the reverse prior: class 4)
    assert int(ref.argmax()) != int(REVERSE.argmax())


def test_short_last_batch_is_merged_with_the_one_before():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(21, 5, generator=g, dtype=torch.float64) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallCouplingWarning)
        got = ot_scores(z, REVERSE, mode="reot", eps=0.5, tol=1e-10, batch_size=10, seed=3)
    order = torch.randperm(21, generator=torch.Generator().manual_seed(3))
    first, rest = order[:10], order[10:]  # the remainder of 1 row joins the second batch: 10 + 11
    np.testing.assert_allclose(got[first].numpy(), _pot_scores(z[first], REVERSE, 0.5), atol=1e-7)
    np.testing.assert_allclose(got[rest].numpy(), _pot_scores(z[rest], REVERSE, 0.5), atol=1e-7)


def test_nan_logits_raise_naming_the_rows():
    z = torch.randn(4, 5)
    z[1, 2] = float("nan")
    z[3, 0] = float("inf")
    for mode in ("softmax", "class_bias", "reot", "dbot", "tau_norm"):
        with pytest.raises(ValueError, match=r"NaN or inf entries in 2 of 4 rows \(first rows \[1, 3\]\)"):
            _head().predict(z, mode)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_are_coupled_in_float32(dtype):
    g = torch.Generator().manual_seed(6)
    z = (torch.randn(64, 5, generator=g) * 3).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence warning, no balanced-mass error
        scores = _head().predict_scores(z, "reot", "reverse", eps=0.5, tol=1e-6)
    assert scores.dtype == torch.float32
    np.testing.assert_allclose(scores.double().numpy(), _pot_scores(z.float(), REVERSE, 0.5), atol=2e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(logits=torch.ones(3, 5, dtype=torch.long)), "logits must be floating point"),
    (dict(logits=[[0.0] * 5] * 3), "logits must be a torch tensor"),
    (dict(mode=None), "unknown inference mode None"),
    (dict(eps="1"), "eps must be a finite number > 0"),
    (dict(eps=float("nan")), "eps must be a finite number > 0"),
    (dict(mode="dbot", delta=-1), "delta >= 0"),
    (dict(batch_size=2.5), "batch_size must be an integer >= 1"),
    (dict(test_prior=[1, 1, 1, 1]), "4 entries but there are 5 classes"),
    (dict(test_prior=[1, 1, 1, 1, float("nan")]), "non-negative with a positive sum"),
    (dict(mode="class_bias", tau="x"), "tau \\(class_bias\\) must be a finite number"),
])
def test_predict_bad_arguments_raise(kwargs, match):
    kw = dict(logits=torch.randn(20, 5), mode="reot")
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _head().predict(kw.pop("logits"), kw.pop("mode"), **kw)


def test_ot_scores_normalises_an_unnormalised_prior():
    z = torch.randn(12, 5, dtype=torch.float64)
    np.testing.assert_allclose(ot_scores(z, REVERSE * 7, mode="reot", eps=0.5, tol=1e-10).numpy(),
                               _pot_scores(z, REVERSE, 0.5), atol=1e-7)


# ---------------------------------------------------------------- DBOTClustering.predict

from sklearn.datasets import make_blobs  # noqa: E402

from otcls.cluster import DBOTClustering  # noqa: E402


def _fitted_clustering():
    X, _ = make_blobs([80, 40, 30], centers=[[0, 0], [6, 0], [3, 5]], cluster_std=0.5, random_state=0)
    return X, DBOTClustering(3, size_min=0.3, size_max=0.36, eps=0.05, random_state=0).fit(X)


def test_predict_defaults_to_the_nearest_centroid():
    X, m = _fitted_clustering()
    new = np.array([[0.1, 0.0], [-0.2, 0.1], [0.0, -0.1], [0.2, 0.2]])  # four new points of the first blob
    nearest = ((new[:, None, :] - m.cluster_centers_[None]) ** 2).sum(-1).argmin(1)  # numpy reference
    got = m.predict(new)
    np.testing.assert_array_equal(got, nearest)
    assert len(set(got.tolist())) == 1  # one blob, one cluster
    # the bounded assignment spreads the same four points over clusters (each must get ~1/3 of the mass)
    assert len(set(m.predict(new, bounded=True).tolist())) > 1


def test_predict_bounded_flag_is_checked():
    X, m = _fitted_clustering()
    with pytest.raises(ValueError, match="bounded must be True or False"):
        m.predict(X[:3], bounded="yes")
