"""Per-batch OT inference against POT batch by batch, for several seeds and both ways a set ends: a remainder
batch of its own, and a short remainder merged into the batch before it."""
from __future__ import annotations

import math

import numpy as np
import ot as pot
import pytest
import torch

from otcls.inference.scores import ot_scores


@pytest.mark.parametrize("seed", [0, 1, 5])
@pytest.mark.parametrize("n,sizes", [(25, [10, 10, 5]), (23, [10, 13])])  # 4 classes: a remainder < 4 merges
def test_reot_batches_match_pot(seed, n, sizes):
    g = torch.Generator().manual_seed(100 + n)
    logits = torch.randn(n, 4, generator=g, dtype=torch.float64) * 2
    prior = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    got = ot_scores(logits, prior, mode="reot", eps=0.5, tol=1e-11, max_iter=20000, batch_size=10, seed=seed)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    start = 0
    for size in sizes:
        rows = order[start:start + size]
        plan = pot.sinkhorn(np.full(size, 1.0 / size), prior.numpy(), -logits[rows].numpy(), 0.5,
                            stopThr=1e-13, numItermax=100000)
        np.testing.assert_allclose(got[rows].numpy(), size * plan, atol=1e-7, err_msg=f"rows {start}:{start + size}")
        start += size
    assert start == n


def test_a_set_too_small_to_couple_gets_the_prior_shift_by_hand():
    # one row, 2 classes, equal logits: posterior ∝ b / pi_s = (0.5/0.8, 0.5/0.2) -> (0.2, 0.8)
    from otcls.inference.scores import SmallCouplingWarning, prior_shift_scores

    logits = torch.zeros(1, 2, dtype=torch.float64)
    prior, source = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.8, 0.2], dtype=torch.float64)
    assert torch.allclose(prior_shift_scores(logits, prior, source), torch.tensor([[0.2, 0.8]], dtype=torch.float64))
    with pytest.warns(SmallCouplingWarning):
        got = ot_scores(logits, prior, mode="dbot", source_prior=source)
    assert torch.allclose(got, torch.tensor([[0.2, 0.8]], dtype=torch.float64))
    # logits (log 3, 0), uniform source, b = (0.25, 0.75): ∝ (0.75, 0.75) -> (0.5, 0.5)
    logits = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    got = prior_shift_scores(logits, torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert torch.allclose(got, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
