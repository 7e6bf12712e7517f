"""Masked fixed-point iteration shared by every iterative solver, and its three gradient modes.

A solver is a map ``z -> step(z)`` on a state tensor ``z`` of shape ``(B, k)`` (log-scalings)
plus ``error(z) -> (B,)``. Each problem stops at its own tolerance (its rows of ``z`` are frozen
by a mask); the error is computed every ``check_every`` steps so the loop does not synchronise
with the device at every step.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .result import OTConvergenceWarning

Step = Callable[[torch.Tensor], torch.Tensor]
GRAD_MODES = ("autodiff", "implicit", "detach")


@dataclass
class Trace:
    z: torch.Tensor
    n_iter: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor
    errors: torch.Tensor


def check_options(tol: Optional[float], max_iter: int, check_every: int, grad: str) -> None:
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be > 0 (or None for a fixed number of iterations), got {tol}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if int(check_every) < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")


def iterate(step: Step, z0: torch.Tensor, error: Callable[[torch.Tensor], torch.Tensor], *,
            tol: Optional[float], max_iter: int, check_every: int) -> Trace:
    """Run ``step`` until every problem's error is <= tol (or ``max_iter``); ``tol=None`` runs all."""
    B = z0.shape[0]
    z = z0
    active = torch.ones(B, dtype=torch.bool, device=z0.device)
    n_iter = torch.zeros(B, dtype=torch.long, device=z0.device)
    history = []
    for it in range(1, max_iter + 1):
        z_new = step(z)
        z = torch.where(active[:, None], z_new, z) if tol is not None else z_new
        n_iter = n_iter + active
        if tol is not None and (it % check_every == 0 or it == max_iter):
            err = error(z).detach()
            history.append(err)
            active = active & ~(err <= tol)
            if not bool(active.any()):
                break
    err = error(z).detach() if not history or tol is None else history[-1]
    if not history:
        history.append(err)
    converged = err <= tol if tol is not None else torch.isfinite(err)
    return Trace(z, n_iter, err, converged, torch.stack(history))


def warn_if_not_converged(trace: Trace, tol: Optional[float], max_iter: int, method: str, what: str) -> None:
    if tol is None or bool(trace.converged.all()):
        return
    bad = (~trace.converged).sum().item()
    worst = trace.error[~trace.converged].max().item()
    warnings.warn(OTConvergenceWarning(
        f"{method}: {bad} of {trace.converged.numel()} problem(s) did not converge in max_iter={max_iter}: "
        f"{what} violation {worst:.3e} > tol {tol:.1e}. Raise max_iter, raise eps, or loosen tol."),
        stacklevel=3)


def solve_fixed_point(step: Step, z0: torch.Tensor, error: Callable[[torch.Tensor], torch.Tensor], *,
                      tol: Optional[float], max_iter: int, check_every: int, grad: str,
                      shift_invariant: bool = False, exact_step: Optional[Step] = None) -> Trace:
    """Iterate to the fixed point and attach gradients according to ``grad``.

    * ``autodiff``: backpropagate through every unrolled step (memory grows with iterations).
    * ``implicit``: iterate without a graph, then one differentiable step at the fixed point
      ``z* = T(z*, θ)`` whose incoming gradient ``v`` is replaced by ``w = (I - Jᵀ)⁻¹ v``
      (``J = ∂T/∂z`` at ``z*``, solved by the Neumann/fixed-point iteration ``w ← Jᵀw + v``),
      which gives exactly ``dL/dθ = wᵀ ∂T/∂θ`` with memory of one step.
    * ``detach``: no gradient.

    ``shift_invariant``: ``T(z + c·1) = T(z) + c·1`` (balanced Sinkhorn); the adjoint is then
    kept orthogonal to ``1``, the direction along which ``I - Jᵀ`` is singular.
    ``exact_step``: a stateless implementation of the same map, used for the implicit step when
    ``step`` keeps a cache (e.g. an absorbed kernel) built without a graph.
    """
    if grad == "autodiff":
        return iterate(step, z0, error, tol=tol, max_iter=max_iter, check_every=check_every)
    with torch.no_grad():
        trace = iterate(step, z0.detach(), error, tol=tol, max_iter=max_iter, check_every=check_every)
    if grad == "detach" or not torch.is_grad_enabled():
        return trace
    exact_step = exact_step or step
    z_star = trace.z.detach()
    z_out = exact_step(z_star)
    if z_out.requires_grad:
        z_out.register_hook(_adjoint_hook(exact_step, z_star, tol or 1e-7, max_iter, shift_invariant))
    trace.z = z_out
    return trace


def _adjoint_hook(step: Step, z_star: torch.Tensor, tol: float, max_iter: int, shift_invariant: bool):
    def hook(v: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(z_star)
        v = torch.where(finite, v, torch.zeros_like(v))
        with torch.enable_grad():
            z0 = z_star.clone().requires_grad_(True)
            tz = step(z0)
        w = v
        for _ in range(max_iter):
            jw, = torch.autograd.grad(tz, z0, w, retain_graph=True)
            w_new = torch.where(finite, jw + v, torch.zeros_like(v))
            if shift_invariant:
                mean = w_new.sum(-1, keepdim=True) / finite.sum(-1, keepdim=True).clamp_min(1)
                w_new = torch.where(finite, w_new - mean, torch.zeros_like(w_new))
            done = (w_new - w).abs().max() <= tol * (1.0 + w_new.abs().max())
            w = w_new
            if done:
                break
        return w
    return hook
