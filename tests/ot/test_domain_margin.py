"""The scaling-domain margin against its closed form written out by hand (not through the code's own constants):
½ log(1/tiny) is 63 ln 2 in float32 and 511 ln 2 in float64 (tiny = 2^-126, 2^-1022)."""
from __future__ import annotations

import math

import pytest
import torch

from otcls.ot import LinearProblem
from otcls.ot.domain import safe_log_range, scaling_margin

HALF_RANGE = {torch.float32: 63 * math.log(2), torch.float64: 511 * math.log(2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_margin_closed_form(dtype):
    assert safe_log_range(dtype) == pytest.approx(HALF_RANGE[dtype], rel=1e-12)
    C = torch.tensor([[0.0, 1.0], [2.0, 0.5], [0.3, 0.3]], dtype=dtype)
    a = torch.tensor([0.2, 0.3, 0.5], dtype=dtype)
    b = torch.tensor([0.4, 0.6], dtype=dtype)
    eps = 0.1
    # row ranges 1, 1.5, 0 -> R = 1.5 / 0.1 = 15; spreads log(0.5/0.2) and log(0.6/0.4); log max(n, m) = log 3
    want = HALF_RANGE[dtype] - 15.0 - math.log(2.5) - math.log(1.5) - math.log(3)
    got = float(scaling_margin(LinearProblem.build(C, a, b, eps=eps)))
    assert got == pytest.approx(want, abs=1e-4)
    # DB-OT: the column spread is over both bounds together, log(1.1·0.6 / (0.9·0.4))
    got = float(scaling_margin(LinearProblem.build(C, a, lower=0.9 * b, upper=1.1 * b, eps=eps)))
    assert got == pytest.approx(HALF_RANGE[dtype] - 15.0 - math.log(2.5) - math.log(0.66 / 0.36) - math.log(3),
                                abs=1e-4)
