"""EM test-prior estimation (Saerens et al., 2002) on a synthetic label shift with a known prior."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from otcls.heads import TransportHead
from otcls.inference import em_prior

MEANS = np.array([0.0, 2.0, 4.0, 6.0])
TRAIN = np.array([0.55, 0.25, 0.13, 0.07])
TEST = TRAIN[::-1].copy()


def _shifted_set(n=5000, seed=0):
    """Test samples drawn with the TEST prior; logits = Bayes log-posterior under the TRAIN prior."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=TEST)
    x = rng.normal(MEANS[y], 1.0)
    logits = -0.5 * (x[:, None] - MEANS[None, :]) ** 2 + np.log(TRAIN)
    return torch.tensor(logits), torch.tensor(y)


def test_em_prior_is_the_maximum_likelihood_prior_and_close_to_truth():
    logits, y = _shifted_set()
    probs = logits.softmax(1)
    est = em_prior(probs, torch.tensor(TRAIN)).numpy()
    assert np.abs(est - TEST).sum() < 0.05
    assert np.abs(est - np.bincount(y.numpy(), minlength=4) / len(y)).sum() < 0.03
    # Independent reference: maximise Σ_i log Σ_c p_ic π_c / π^s_c over the simplex (softmax param.).
    p = probs.numpy() / TRAIN

    def nll(theta):
        pi = np.exp(theta - theta.max())
        pi /= pi.sum()
        return -np.log(p @ pi).sum()

    res = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10})
    mle = np.exp(res.x - res.x.max())
    mle /= mle.sum()
    assert np.allclose(est, mle, atol=2e-4)


def test_em_prior_without_shift_stays_at_train_prior():
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=8000, p=TRAIN)
    x = rng.normal(MEANS[y], 1.0)
    probs = torch.tensor(-0.5 * (x[:, None] - MEANS[None, :]) ** 2 + np.log(TRAIN)).softmax(1)
    empirical = np.bincount(y, minlength=4) / len(y)
    assert np.abs(em_prior(probs, torch.tensor(TRAIN)).numpy() - empirical).sum() < 0.04


def test_dbot_inference_with_estimated_prior_beats_softmax():
    logits, y = _shifted_set()
    head = TransportHead(1, 4, class_counts=(TRAIN * 1000).round()).double()
    acc = {m: (head.predict(logits, m, "estimated", eps=1.0, delta=0.05, tol=1e-8) == y).double().mean().item()
           for m in ("softmax", "dbot")}
    oracle = (head.predict(logits, "dbot", torch.tensor(TEST), eps=1.0, delta=0.05, tol=1e-8) == y).double().mean()
    assert acc["dbot"] > acc["softmax"] + 0.05
    assert acc["dbot"] == pytest.approx(oracle.item(), abs=0.02)


def test_em_prior_errors():
    with pytest.raises(ValueError, match=r"probs must be \(N, 3\)"):
        em_prior(torch.rand(5, 4), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        em_prior(torch.rand(5, 3), torch.tensor([1.0, 0.0, 1.0]))
