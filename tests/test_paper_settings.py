"""Settings that follow the papers: per-batch OT inference, the DB-OT loss ratio, fine-tuning from a checkpoint,
and the prior each loss calibrates softmax to (used by EM prior estimation and the class-aware bias)."""
from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from otcls.heads import TransportHead
from otcls.inference import ot_scores
from otcls.losses import build_loss
from otcls.tasks.image import ImageClassifier, inference_settings

COUNTS = [500, 200, 80, 20, 5]


def test_per_batch_ot_inference_matches_pot_on_each_batch():
    torch.manual_seed(0)
    logits = torch.randn(70, 4, dtype=torch.float64) * 2
    prior = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    scores = ot_scores(logits, prior, mode="reot", eps=1.0, tol=1e-10, max_iter=20000, batch_size=32, seed=3)
    order = torch.randperm(70, generator=torch.Generator().manual_seed(3))
    for chunk in (order[:32], order[32:64], order[64:]):
        n = len(chunk)
        ref = pot.sinkhorn(np.full(n, 1 / n), prior.numpy(), -logits[chunk].numpy(), reg=1.0,
                           stopThr=1e-12, numItermax=20000)
        assert np.allclose(scores[chunk].numpy(), ref * n, atol=1e-7)
    # one batch at least as large as the set is the whole-set coupling
    whole = ot_scores(logits, prior, mode="reot", eps=1.0, tol=1e-10, max_iter=20000)
    assert torch.allclose(ot_scores(logits, prior, mode="reot", eps=1.0, tol=1e-10, max_iter=20000, batch_size=70),
                          whole)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        ot_scores(logits, prior, mode="dbot", batch_size=0)


def test_inference_settings_names():
    names = [s[0] for s in inference_settings(["softmax", "class_bias", "dbot"], ["known", "estimated"], 128, True)]
    assert names == ["softmax", "class_bias:known", "class_bias:estimated", "dbot:known", "dbot_whole:known",
                     "dbot:estimated", "dbot_whole:estimated"]
    only_whole = inference_settings(["reot"], ["uniform"], None, True)
    assert only_whole == [("reot_whole:uniform", "reot", "uniform", None)]


def test_dbot_batch_ratio_single_class_batch_falls_back_visibly():
    torch.manual_seed(0)
    z = torch.randn(8, 16, requires_grad=True)
    head = TransportHead(16, 5, loss="dbot", loss_kwargs={"ratio": "batch", "delta": 0.2}, class_counts=COUNTS)
    y = torch.zeros(8, dtype=torch.long)
    with pytest.warns(RuntimeWarning, match="single class"):
        loss = head.compute_loss(head(z), y)
    loss.backward()
    assert loss.item() > 0 and z.grad.norm() > 0  # never the silent zero of a one-class batch ratio
    train = TransportHead(16, 5, loss="dbot", loss_kwargs={"ratio": "train", "delta": 0.2}, class_counts=COUNTS)
    train.load_state_dict(head.state_dict())
    assert torch.allclose(loss, train.compute_loss(train(z), y))
    with pytest.raises(ValueError, match="single class gives loss 0"):
        build_loss("dbot", num_classes=5, ratio="batch", delta=0.2)(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))


def test_softmax_prior_of_each_loss():
    pi = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    uniform = torch.full((5,), 0.2, dtype=torch.float64)

    def prior(name, **kw):
        return build_loss(name, num_classes=5, class_counts=COUNTS, **kw).softmax_prior(pi)

    assert torch.allclose(prior("ce"), pi)
    assert torch.allclose(prior("balanced_softmax"), uniform)
    assert torch.allclose(prior("logit_adjust", tau=1.0), uniform)
    assert torch.allclose(prior("logit_adjust", tau=0.5), pi.sqrt() / pi.sqrt().sum())
    assert torch.allclose(prior("reot", prior="ratio", lam=1.0), uniform)
    assert torch.allclose(prior("reot", prior="ratio", lam=0.0), pi)
    assert torch.allclose(prior("dbot", prior="counts"), uniform)
    assert torch.allclose(prior("dbot"), pi)


def test_class_bias_with_a_balanced_loss_leaves_uniform_logits_alone():
    z = torch.randn(6, 5)
    head = TransportHead(3, 5, loss="balanced_softmax", class_counts=COUNTS)
    # softmax of a Balanced Softmax model already assumes a uniform prior: no correction for a uniform test prior
    assert torch.allclose(head.predict_scores(z, "class_bias", "uniform"), z.softmax(1), atol=1e-6)


def _classifier(counts):
    return ImageClassifier(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [4]},
                           num_classes=5, class_counts=counts)


def test_init_checkpoint_loads_weights_and_rejects_other_data(tmp_path):
    src = _classifier(COUNTS)
    path = str(tmp_path / "ce.ckpt")
    torch.save({"state_dict": src.state_dict(), "hyper_parameters": dict(src.hparams)}, path)
    dst = _classifier(COUNTS)
    dst._load_init_checkpoint(path)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="same data and seed"):
        _classifier([400, 200, 80, 20, 5])._load_init_checkpoint(path)
    with pytest.raises(ValueError, match="not found"):
        dst._load_init_checkpoint(str(tmp_path / "missing.ckpt"))


@pytest.mark.parametrize("name", ["ce", "focal", "ldam", "logit_adjust", "cb_ce", "cb_focal", "balanced_softmax",
                                  "reot", "dbot"])
def test_empty_batch_is_an_error_not_nan(name):
    loss = build_loss(name, num_classes=5, class_counts=COUNTS)
    with pytest.raises(ValueError, match="empty batch"):
        loss(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))


def test_zero_count_class_is_an_error_for_prior_corrections():
    head = TransportHead(16, 5, loss="ce", class_counts=[500, 200, 0, 20, 5])
    z = torch.randn(8, 5)
    for mode, prior in (("class_bias", "uniform"), ("dbot", "estimated")):
        with pytest.raises(ValueError, match=r"classes \[2\] have no training samples"):
            head.predict_scores(z, mode=mode, test_prior=prior)
    # an explicit source prior is the user's way around it
    scores = head.predict_scores(z, mode="class_bias", test_prior="uniform", source_prior="uniform")
    assert torch.isfinite(scores).all()
