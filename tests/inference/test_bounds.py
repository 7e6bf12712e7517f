"""DB-OT column bounds sized from the batch: scipy's binomial quantiles, checked by hand and by simulation."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import binom

from otcls.inference import column_bounds, ot_scores

B = torch.full((10,), 0.1, dtype=torch.float64)


def test_binomial_bounds_by_hand_and_by_simulation():
    lo, hi = column_bounds(B, 256, level=0.95)
    # Binomial(256, 0.1): 2.5 % / 97.5 % quantiles are 17 and 35 rows
    assert float(binom.ppf(0.025, 256, 0.1)) == 17 and float(binom.ppf(0.975, 256, 0.1)) == 35
    assert torch.allclose(lo, torch.full((10,), 17 / 256, dtype=torch.float64))
    assert torch.allclose(hi, torch.full((10,), 35 / 256, dtype=torch.float64))
    # about 95 % of random batches of 256 have their class share inside (the interval is discrete: >= 95 %)
    g = torch.Generator().manual_seed(0)
    share = torch.stack([torch.bincount(torch.randint(0, 10, (256,), generator=g), minlength=10) / 256
                         for _ in range(2000)]).double()
    inside = ((share >= lo) & (share <= hi)).double().mean()
    assert 0.94 < float(inside) < 0.99
    # shrinks like 1/sqrt(n); fixed delta is the old rule
    lo2, hi2 = column_bounds(B, 10000)
    assert float(hi2[0] - lo2[0]) < 0.2 * float(hi[0] - lo[0])
    lo3, hi3 = column_bounds(B, 256, delta=0.1)
    assert torch.allclose(lo3, 0.9 * B) and torch.allclose(hi3, 1.1 * B)


def test_binomial_bounds_contain_prior_and_zero_class():
    p = torch.tensor([0.7, 0.3, 0.0], dtype=torch.float64)
    lo, hi = column_bounds(p, 16)
    assert bool((lo <= p).all() and (p <= hi).all()) and float(lo[2]) == 0.0 and float(hi[2]) == 0.0
    assert float(lo.sum()) <= 1.0 <= float(hi.sum())  # feasible


def test_dbot_default_is_binomial_and_loosens_per_batch():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(512, 10, generator=g, dtype=torch.float64)
    z[:, 0] += 1.5  # the model over-predicts class 0: its column binds at the upper bound
    default = ot_scores(z, B, mode="dbot", batch_size=256, tol=1e-8)
    named = ot_scores(z, B, mode="dbot", delta="binomial", batch_size=256, tol=1e-8)
    assert torch.equal(default, named)
    # columns of each batch's coupling inside its binomial bounds (and outside the fixed delta=0.1 ones)
    order = torch.randperm(512, generator=torch.Generator().manual_seed(0))
    col = default[order[:256]].sum(0) / 256
    lo, hi = column_bounds(B, 256)
    assert bool((col >= lo - 1e-6).all() and (col <= hi + 1e-6).all())
    assert bool(((col < 0.9 * B - 1e-3) | (col > 1.1 * B + 1e-3)).any())


@pytest.mark.parametrize("kw,match", [(dict(delta="wilsonx"), "unknown DB-OT bounds"),
                                      (dict(delta="binomial", level=1.5), "level"), (dict(delta=-0.1), "delta")])
def test_bounds_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        column_bounds(B, 256, **kw)
