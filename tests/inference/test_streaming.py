"""Streaming OT inference: the stream's class potentials reach the whole-set coupling's (POT's ot.sinkhorn as
the independent reference for RE-OT, otcls.ot's exact DB-OT solve for DB-OT), in any batch order, with the known
prior and with the prior estimated online (EM)."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from otcls.heads import TransportHead
from otcls.inference import StreamingCoupling, column_bounds, em_prior, ot_scores, stream_scores
from otcls.ot import solve

N, C = 2000, 5
PRIOR = torch.tensor([0.4, 0.25, 0.15, 0.12, 0.08], dtype=torch.float64)


def fixed_logits(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.multinomial(PRIOR, N, replacement=True, generator=g)
    return (2.0 * torch.nn.functional.one_hot(y, C) + torch.randn(N, C, generator=g, dtype=torch.float64)), y


def pot_potentials(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Whole-set RE-OT class potentials from POT (log-domain Sinkhorn, eps 1), centred (they are defined up to a
    constant)."""
    a = np.full(z.shape[0], 1.0 / z.shape[0])
    _, log = ot.sinkhorn(a, b.numpy(), (-z).numpy(), 1.0, method="sinkhorn_log", log=True, stopThr=1e-12,
                         numItermax=20000)
    g = torch.as_tensor(log["log_v"])
    return g - g.mean()


def run_stream(z, prior, mode, batch_size, passes, seed, **kw) -> StreamingCoupling:
    s = StreamingCoupling(C, prior, mode=mode, eps=1.0, **kw)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(passes):
        order = torch.randperm(z.shape[0], generator=gen)
        for i in range(0, z.shape[0], batch_size):
            s.update(z[order[i:i + batch_size]])
    return s


@pytest.mark.parametrize("batch_size", [64, 256])
def test_reot_stream_potentials_converge_to_pot_whole_set(batch_size):
    z, _ = fixed_logits()
    ref = pot_potentials(z, PRIOR)
    errs = []
    for passes in (1, 20):
        g = run_stream(z, PRIOR, "reot", batch_size, passes, seed=1).potentials
        errs.append(float(((g - g.mean()) - ref).abs().max()))
    assert errs[1] < 0.01 and errs[1] < errs[0], errs


def test_stream_is_independent_of_batch_order_in_the_limit():
    z, _ = fixed_logits()
    ref = pot_potentials(z, PRIOR)
    gs = [run_stream(z, PRIOR, "reot", 128, 40, seed=s).potentials for s in (3, 4)]
    gs = [g - g.mean() for g in gs]
    assert float((gs[0] - gs[1]).abs().max()) < 0.01
    assert all(float((g - ref).abs().max()) < 0.01 for g in gs)
    # scores (hence predictions) follow: the whole-set coupling's argmax
    whole = ot_scores(z, PRIOR, mode="reot", tol=1e-9).argmax(1)
    streamed = stream_scores(z, PRIOR, mode="reot", batch_size=128, seed=5, passes=20).argmax(1)
    assert float((whole == streamed).double().mean()) > 0.99


def test_dbot_stream_reaches_exact_dbot_solve():
    z, _ = fixed_logits()
    lo, hi = column_bounds(PRIOR, N, delta=0.1)
    a = torch.full((N,), 1.0 / N, dtype=torch.float64)
    ref = solve(-z, a, eps=1.0, lower=lo, upper=hi, tol=1e-10, max_iter=20000, grad="detach").g
    # the full set as one "batch" each step: deterministic ascent reaches the optimum itself
    full = StreamingCoupling(C, PRIOR, mode="dbot", eps=1.0, delta=0.1)
    for _ in range(2000):
        full.update(z)
    assert float((full.g - ref).abs().max()) < 1e-3
    errs = [float((run_stream(z, PRIOR, "dbot", 256, p, seed=1, delta=0.1).potentials - ref).abs().max())
            for p in (5, 100)]
    assert errs[1] < 0.03 and errs[1] < errs[0], errs


def test_estimated_prior_stream_reaches_em_and_its_coupling():
    z, _ = fixed_logits()
    source = torch.full((C,), 1.0 / C, dtype=torch.float64)
    em = em_prior(z.softmax(1), source, tol=1e-12)
    s = run_stream(z, None, "reot", 128, 40, seed=2, source_prior=source)
    assert float((s.prior - em).abs().sum()) < 0.02
    ref = pot_potentials(z, em)
    assert float(((s.potentials - s.potentials.mean()) - ref).abs().max()) < 0.05


def test_head_stream_modes_and_estimated_prior_on_the_stream():
    z, y = fixed_logits()
    head = TransportHead(4, C)
    whole = head.predict(z.float(), mode="reot", test_prior=PRIOR)
    streamed = head.predict(z.float(), mode="reot_stream", test_prior=PRIOR, batch_size=64, passes=10)
    assert float((whole == streamed).double().mean()) > 0.99
    est = head.predict(z.float(), mode="dbot_stream", test_prior="estimated", batch_size=64, delta=0.1)
    assert est.shape == (N,) and float((est == y).double().mean()) > 0.6
    # batch_size=None: the stream's limit, the whole-set coupling
    assert torch.equal(head.predict(z.float(), mode="reot_stream", test_prior=PRIOR), whole)


@pytest.mark.parametrize("kwargs,match", [(dict(mode="sinkhorn"), "mode"), (dict(eps=0.0), "eps"),
                                          (dict(step=-1.0), "step"), (dict(prior=[1.0, -1, 0, 0, 0]), "prior")])
def test_stream_bad_input(kwargs, match):
    kw = dict(prior=PRIOR)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        StreamingCoupling(C, **kw)


def test_stream_bad_batch():
    s = StreamingCoupling(C, PRIOR)
    with pytest.raises(ValueError, match="stream batch"):
        s.update(torch.zeros(3, C + 1))
    with pytest.raises(ValueError, match="NaN"):
        s.update(torch.full((3, C), float("nan")))
