"""Solver output: the plan, the potentials and the convergence record (OTT-JAX style)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


class OTConvergenceWarning(UserWarning):
    """A solver stopped at ``max_iter`` before its marginal/bound violation fell below ``tol``."""


class OTNumericalError(ValueError, FloatingPointError):
    """The problem is beyond the dtype's range or precision (e.g. ``|C| / eps`` too large): the solver stops
    rather than return a plan with inf entries or missed marginals. A ``ValueError`` (of the inputs) and a
    ``FloatingPointError`` (what the scaling-domain solvers raise when they leave their range)."""


@dataclass
class OTResult:
    """Result of an OT solve. Batched inputs give batched fields; unbatched inputs unbatched ones.

    Attributes:
        plan: the coupling ``P``, shape ``(B, n, m)`` or ``(n, m)``.
        f, g: dual potentials in cost units, ``P = Q ⊙ exp((f_i + g_j - C_ij) / eps)``.
        n_iter: iterations run per problem (0 for closed forms).
        error: final violation per problem: L1 error of the marginal that the last update did
            not enforce, plus, for DB-OT, the L1 violation of the column bounds.
        converged: ``error <= tol`` per problem (always True for closed forms and ``tol=None``
            runs that reached ``max_iter`` are marked by their error alone).
        errors: convergence record, one row per check, shape ``(n_checks, B)`` or ``(n_checks,)``.
        method: the solver that produced the result; ``"a+b"`` when a batch was split between two
            (``solve(method="auto")`` solves each problem in the domain its range allows).
        cost: the cost matrix the plan was solved for (kept for ``transport_cost``).
    """

    plan: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    n_iter: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor
    errors: torch.Tensor
    method: str
    cost: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def transport_cost(self) -> torch.Tensor:
        """``<C, P>`` per problem."""
        return (self.cost * self.plan).sum(dim=(-2, -1))

    @property
    def row_marginal(self) -> torch.Tensor:
        return self.plan.sum(-1)

    @property
    def col_marginal(self) -> torch.Tensor:
        return self.plan.sum(-2)
