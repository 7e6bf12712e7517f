r"""DB-OT column bounds sized from the batch: the sampling noise of a batch's class counts.

A batch of n rows drawn from a test set with class prior p holds ``N_j ~ Binomial(n, p_j)`` rows of class
j, so its true column mass ``N_j / n`` is not ``p_j`` but lies, with probability ``level``, in

.. math::
    \Big[\tfrac1n F^{-1}_{n,p_j}\big(\tfrac{1-\text{level}}2\big),\ \tfrac1n F^{-1}_{n,p_j}\big(\tfrac{1+\text{level}}2\big)\Big]

(``F`` the Binomial(n, p_j) CDF: the exact central interval of the count, ``scipy.stats.binom.interval``),
widened to contain ``p_j``. DB-OT inference with these bounds constrains each column only as much as the
batch's own randomness allows: at n = 256, p_j = 0.1 the interval is [0.066, 0.137] (δ ≈ ±0.35 relative),
at n = 10,000 it is [0.094, 0.106]; a fixed δ = 0.1 is too tight for the first and too loose for the second.
"""
from __future__ import annotations

import math
from typing import Tuple, Union

import torch

BOUNDS = ("binomial",)  # named bounds; a number is a fixed relative δ


def column_bounds(prior: torch.Tensor, n: int, *, delta: Union[float, str] = "binomial",
                  level: float = 0.95) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(lower, upper)`` column masses for a coupling of ``n`` rows with prior ``prior`` (C,).

    ``delta`` a number >= 0: ``[(1-δ) p, (1+δ) p]`` (lower clipped at 0). ``delta="binomial"``: the central
    binomial interval of ``N_j / n`` at ``level`` (see the module docstring), per class.
    """
    if isinstance(delta, str):
        if delta not in BOUNDS:
            raise ValueError(f"unknown DB-OT bounds {delta!r}; give a number delta >= 0 or one of: {', '.join(BOUNDS)}")
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
            raise ValueError(f"binomial bounds need a confidence level in (0, 1); got {level!r}")
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"binomial bounds need the number of rows n >= 1; got {n!r}")
        from scipy.stats import binom

        p = prior.detach().double().cpu().clamp(0.0, 1.0).numpy()
        lo, hi = binom.interval(level, int(n), p)
        lo = torch.as_tensor(lo / n, dtype=torch.float64).nan_to_num(0.0)
        hi = torch.as_tensor(hi / n, dtype=torch.float64).nan_to_num(1.0)
        pd = prior.detach().double().cpu()
        return (torch.minimum(lo, pd).to(prior), torch.maximum(hi, pd).to(prior))
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"dbot inference needs a number delta >= 0 or one of {', '.join(BOUNDS)}; got {delta!r}")
    return ((1.0 - delta) * prior).clamp_min(0.0), (1.0 + delta) * prior


__all__ = ["BOUNDS", "column_bounds"]
