import numpy as np
import pytest
import torch


def random_problem(n, m, seed=0, dtype=torch.float64, batch=None):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, n, m) if batch else (n, m)
    cost = torch.rand(shape, generator=g, dtype=dtype)
    a = torch.rand(shape[:-1], generator=g, dtype=dtype) + 0.1
    a = a / a.sum(-1, keepdim=True)
    b = torch.rand(shape[:-2] + (m,), generator=g, dtype=dtype) + 0.1
    b = b / b.sum(-1, keepdim=True)
    return cost, a, b


def entropic_dbot_cvxpy(C, a, lower, upper, eps, Q=None):
    """Reference: the entropic DB-OT problem solved by a conic solver (Clarabel)."""
    cp = pytest.importorskip("cvxpy")
    n, m = C.shape
    P = cp.Variable((n, m), nonneg=True)
    logQ = np.zeros((n, m)) if Q is None else np.log(Q)
    # eps * KL~(P|Q) = eps * sum(P log P - P log Q - P + Q); -entr(P) = P log P
    obj = cp.sum(cp.multiply(C - eps * logQ - eps, P)) - eps * cp.sum(cp.entr(P))
    cons = [cp.sum(P, axis=1) == a, cp.sum(P, axis=0) >= lower, cp.sum(P, axis=0) <= upper]
    cp.Problem(cp.Minimize(obj), cons).solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11,
                                             tol_feas=1e-11, max_iter=500)
    return P.value


def dbot_objective(C, P, eps, Q=None):
    logQ = 0.0 if Q is None else np.log(Q)
    P = np.clip(P, 1e-300, None)
    return float((C * P).sum() + eps * (P * (np.log(P) - logQ - 1)).sum())
