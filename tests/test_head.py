"""TransportHead: classifier layers, loss forwarding, inference modes against POT / hand formulas."""
import numpy as np
import ot as pot
import pytest
import torch

from otcls.heads import TransportHead
from otcls.inference import reverse_prior

COUNTS = [40, 20, 10, 5]


def _head(**kw):
    torch.manual_seed(0)
    return TransportHead(6, 4, class_counts=COUNTS, **kw).double()


def _logits(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64) * 2


def test_linear_and_cosine_classifiers():
    x = torch.randn(5, 6, dtype=torch.float64)
    lin = _head()
    assert torch.allclose(lin(x), x @ lin.classifier.weight.T + lin.classifier.bias)
    cos = _head(classifier="cosine", scale=10.0)
    w = cos.classifier.weight
    ref = 10.0 * (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    assert torch.allclose(cos(x), ref)
    with pytest.raises(ValueError, match="unknown classifier 'mlp'"):
        TransportHead(6, 4, classifier="mlp")


def test_loss_lam_and_progress_forwarding():
    head = _head(loss="reot", loss_kwargs={"lam": 0.0})
    z, y = _logits(6), torch.tensor([0, 1, 2, 3, 0, 1])
    ce = torch.nn.functional.cross_entropy(z, y)
    assert torch.allclose(head.compute_loss(z, y), ce)
    head.lam = 0.5
    assert head.loss.lam == 0.5 and head.lam == 0.5
    with pytest.raises(AttributeError, match="loss 'ce' has no λ"):
        _head().lam = 0.3
    ldam = _head(loss="ldam", loss_kwargs={"drw_start": 3})
    ldam.set_progress(3, 5)
    assert ldam.loss.drw_active


def test_softmax_tau_norm_and_class_bias():
    head = _head()
    x = torch.randn(8, 6, dtype=torch.float64)
    z = head(x)
    assert torch.equal(head.predict(z), z.argmax(1))
    w = head.classifier.weight
    ref = (x @ w.T) / w.norm(dim=1) ** 0.7  # Kang et al.: w_j / ||w_j||^τ
    assert torch.allclose(head.predict_scores(z, "tau_norm", tau=0.7), ref.softmax(1))
    pi = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    # Post-hoc logit adjustment subtracts τ·log π for a uniform test prior.
    assert torch.allclose(head.predict_scores(z, "class_bias", "uniform"), (z - pi.log()).softmax(1))
    # For the train prior the bias cancels.
    assert torch.allclose(head.predict_scores(z, "class_bias", "train"), z.softmax(1))


def test_reot_inference_matches_pot_sinkhorn():
    head = _head()
    z = _logits()
    b = reverse_prior(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    got = head.predict_scores(z, "reot", "reverse", eps=0.5, tol=1e-10, max_iter=5000)
    ref = pot.sinkhorn(np.full(12, 1 / 12), b.numpy(), -z.numpy(), reg=0.5, stopThr=1e-12, numItermax=100000) * 12
    assert np.allclose(got.numpy(), ref, atol=1e-7)
    assert torch.equal(head.predict(z, "reot", "reverse", eps=0.5), torch.from_numpy(ref.argmax(1)))


def test_dbot_inference_respects_bounds_and_relaxes_to_softmax():
    head = _head()
    z = _logits(40) + torch.tensor([3.0, 0, 0, 0], dtype=torch.float64)  # biased towards class 0
    scores = head.predict_scores(z, "dbot", "uniform", eps=1.0, delta=0.1, tol=1e-9, max_iter=5000)
    cols = scores.sum(0) / 40
    assert torch.allclose(scores.sum(1), torch.ones(40, dtype=torch.float64))
    assert (cols >= 0.9 * 0.25 - 1e-6).all() and (cols <= 1.1 * 0.25 + 1e-6).all()
    # Bounds wide enough never to bind: plain softmax.
    wide = head.predict_scores(z, "dbot", "uniform", delta=4.0, tol=1e-9)
    assert torch.allclose(wide, z.softmax(1), atol=1e-12)


def test_inference_applies_the_loss_logit_scale():
    """A cosine head trained with LDAM (s = 30) or RE-OT with τ = 0.5: scores are softmax(s·z), not softmax(z)."""
    x = torch.randn(10, 6, dtype=torch.float64)
    ldam = _head(loss="ldam", classifier="cosine", scale=1.0, loss_kwargs={"s": 30.0})
    z = ldam(x)
    assert z.abs().max() <= 1.0
    assert torch.allclose(ldam.predict_scores(z), (30.0 * z).softmax(1))
    pi = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    assert torch.allclose(ldam.predict_scores(z, "class_bias", "uniform"), (30.0 * z - pi.log()).softmax(1))
    b = torch.full((4,), 0.25, dtype=torch.float64)
    got = ldam.predict_scores(z, "reot", "uniform", eps=1.0, tol=1e-10, max_iter=5000)
    ref = pot.sinkhorn(np.full(10, 0.1), b.numpy(), -30.0 * z.detach().numpy(), reg=1.0, stopThr=1e-12,
                       numItermax=100000) * 10
    assert np.allclose(got.detach().numpy(), ref, atol=1e-7)
    reot = _head(loss="reot", loss_kwargs={"tau": 0.5, "lam": 0.0})
    z = reot(x)
    assert torch.allclose(reot.predict_scores(z), (2.0 * z).softmax(1))
    assert torch.allclose(_head().predict_scores(z), z.softmax(1))  # CE: scale 1


def test_reverse_prior_on_unsorted_classes():
    got = reverse_prior(torch.tensor([0.1, 0.6, 0.3]))
    assert torch.allclose(got, torch.tensor([0.6, 0.1, 0.3]))


def test_inference_errors():
    head = _head()
    z = _logits()
    with pytest.raises(ValueError, match="unknown inference mode 'ot'.*softmax, tau_norm, class_bias, reot, dbot"):
        head.predict(z, "ot")
    with pytest.raises(ValueError, match="3 entries but there are 4 classes"):
        head.predict(z, "dbot", [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="unknown test_prior 'longtail'"):
        head.predict(z, "reot", "longtail")
    with pytest.raises(ValueError, match="needs the training class counts"):
        TransportHead(6, 4).double().predict(z, "dbot", "train")
    with pytest.raises(ValueError, match=r"logits must have shape \(n, 4\)"):
        head.predict(z[:, :3])
