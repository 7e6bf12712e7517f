"""Masked fixed-point iteration shared by every iterative solver, and its three gradient modes.

A solver is a map ``z -> step(z)`` on a state tensor ``z`` of shape ``(B, k)`` (log-scalings)
plus ``error(z) -> (B,)``. Each problem stops at its own tolerance (its rows of ``z`` are frozen
by a mask); the error is computed at checks at most ``check_every`` steps apart, each costing one
device synchronisation, so the loop does not synchronise with the device at every step.

Over-relaxation (``relaxed`` given): successive over-relaxation (SOR) of a two-block Gauss-Seidel
iteration such as Sinkhorn's (rows, then columns). The solver supplies ``relaxed(z, omega)``, the step
in which each block moves ``omega`` times as far as its exact update (``omega`` per problem, ``(B, 1)``);
the loop chooses ``omega``. Near the fixed point Sinkhorn is linear and its Jacobi matrix is 2-cyclic
and consistently ordered with spectral radius ``mu`` (the second singular value of the normalised plan),
so Young's SOR theory applies (Lehmann, von Renesse, Sambale, Uschmajew 2022): the plain step contracts
at ``mu^2``, the relaxed one at ``omega - 1`` for the optimal ``omega* = 2 / (1 + sqrt(1 - mu^2))``, with
the same fixed point. The first :data:`RELAX_START` steps are plain; ``mu^2`` is estimated on the device
from the ratio of the last two step lengths (no synchronisation) and ``omega`` set to its ``omega*``. At
every convergence check the rate ``lambda`` observed since the last one refines the estimate through
Young's relation ``mu = (lambda + omega - 1) / (omega sqrt(lambda))`` (valid below ``omega*``, where the
early estimate starts), and ``omega`` moves up to the new ``omega*`` (at most :data:`OMEGA_MAX`); a
problem whose error grew goes back to ``omega = 1``. References: Young, "Iterative methods for solving
partial difference equations of elliptic type", Trans. AMS 76, 1954; Lehmann et al., "A note on
overrelaxation in the Sinkhorn algorithm", Optim. Lett. 16, 2022; Thibault, Chizat, Dossal, Papadakis,
"Overrelaxed Sinkhorn-Knopp algorithm for regularized optimal transport", Algorithms 14, 2021.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol

import numpy as np
import torch

from .result import OTConvergenceWarning, OTNumericalError

Step = Callable[[torch.Tensor], torch.Tensor]
RelaxedStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GRAD_MODES = ("autodiff", "implicit", "detach")
RELAX_START = 5  # iterations of the plain step before omega is estimated (past the first, non-linear ones)
OMEGA_MAX = 1.9  # below 2, where SOR stops contracting


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


class Guard(Protocol):
    """A step whose state can leave the range of its dtype between checks (an absorbed kernel).

    ``probe(z, err)`` returns a 1-D device tensor whose first entry is non-zero when the steps since the
    last check went out of range; ``settle(values)`` reads it on the host and returns False in that case,
    after which the loop replays those steps from the last check with ``careful = True`` (the step then
    verifies itself at every step).
    """

    careful: bool

    def probe(self, z: torch.Tensor, err: Optional[torch.Tensor]) -> torch.Tensor: ...

    def settle(self, values: List[float]) -> bool: ...


def iterate(step: Step, z0: torch.Tensor, error: Callable[[torch.Tensor], torch.Tensor], *,
            tol: Optional[float], max_iter: int, check_every: int, guard: Optional[Guard] = None,
            relaxed: Optional[RelaxedStep] = None) -> Trace:
    """Run ``step`` until every problem's error is <= tol (or ``max_iter``); ``tol=None`` runs all.

    Each problem is checked on its own schedule (:class:`_Schedule`): first after ``check_every`` steps,
    then at the step where its observed linear rate ``(err / err_prev)^(1 / steps)`` predicts
    ``err <= tol``, at most ``check_every`` steps later. With ``relaxed`` both spans are
    ``check_every // 2``: the checks also refine ``omega``, and its faster rate would otherwise be seen
    late. A problem's schedule depends on its own errors only, so it stops at the same step alone or in
    any batch. A check copies one small tensor to the host (the errors, ``omega`` and the guard's probe)
    and keeps the schedule there, never one per step. ``relaxed``: the over-relaxed step (module
    docstring), used with ``tol`` set; its problems' ``omega`` also depends on their own iterates only.
    """
    relax = relaxed is not None and tol is not None
    B = z0.shape[0]
    z = z0
    device = z0.device
    active = None  # device mask of the problems still iterating; None while all are
    n_iter = np.zeros(B, dtype=np.int64)  # up to the last check
    span = max(1, check_every // 2) if relax else check_every  # most steps between two checks
    first = min(span, max_iter)
    schedule = _Schedule(B, tol, span, first, max_iter) if tol is not None else None
    history = []
    saved = (0, z)
    next_check = first
    it = 0
    omega = last_step = None
    replayed = None  # the iteration a careful replay last restarted from (each stretch is replayed once)
    while it < max_iter:
        it += 1
        if omega is not None:
            z_new = relaxed(z, omega)
        else:
            z_new = step(z)
            if relax and it >= RELAX_START - 1:
                length = (z_new - z).detach().abs().amax(-1)
                if last_step is not None:
                    omega = _optimal_omega(torch.nan_to_num(length / last_step, nan=0.0)).unsqueeze(-1)
                last_step = length
        z = z_new if active is None else torch.where(active[:, None], z_new, z)
        if it != next_check:
            continue
        err = error(z).detach() if tol is not None else None
        probe = guard.probe(z, err) if guard is not None else None
        parts = [x for x in (err, None if omega is None else omega[:, 0], probe) if x is not None]
        host = torch.cat([x.reshape(-1).to(torch.float64) for x in parts]).cpu().numpy() if parts else None
        if guard is not None and not guard.settle(host[len(host) - probe.numel():].tolist()):
            if replayed == saved[0]:
                # the careful replay (exact log-sum-exp steps) left the range too: a second one would
                # repeat it, so stop here rather than loop past max_iter
                raise OTNumericalError(
                    f"the iterates leave the range of {z.dtype} even with exact log-sum-exp steps (after "
                    f"{it} of max_iter={max_iter} iterations): exp(-C/eps) is not representable here; "
                    "raise eps, scale the cost down, or use float64")
            replayed = saved[0]
            it, z = saved
            if it < RELAX_START:
                omega = last_step = None
            continue
        if tol is None:
            n_iter += it - saved[0]
            saved = (it, z)
            next_check = min(it + check_every, max_iter)
            continue
        n_iter += schedule.active * (it - saved[0])
        saved = (it, z)
        history.append(err)
        was_active, due, log_rate, seen = schedule.update(it, host[:B])
        if omega is not None and seen.any():
            refined = _refine_omega(host[B:2 * B], seen, log_rate)
            omega = torch.from_numpy(refined).to(device=device, dtype=z.dtype).unsqueeze(-1)
        if not np.array_equal(schedule.active, was_active):
            active = torch.from_numpy(schedule.active).to(device)
        upcoming = schedule.upcoming()
        if upcoming > max_iter:
            break
        next_check = upcoming
    if schedule is not None:
        n_iter += schedule.active * (it - saved[0])
    else:
        n_iter += it - saved[0]
    err = error(z).detach() if not history or tol is None else history[-1]
    if not history:
        history.append(err)
    converged = err <= tol if tol is not None else torch.isfinite(err)
    return Trace(z, torch.from_numpy(n_iter).to(device), err, converged, torch.stack(history))


class _Schedule:
    """Host side of the per-problem convergence checks of :func:`iterate` (NumPy on ``B`` numbers per check:
    a few microseconds, where the same arithmetic as device operations cost ~30 dispatches per check).

    ``active``: problems still iterating; ``due_at``: the step of each one's next check; a problem stops at
    a check it is due at with ``err <= tol``."""

    def __init__(self, B: int, tol: float, span: int, first: int, max_iter: int):
        self.tol, self.span, self.max_iter = tol, span, max_iter
        self.active = np.ones(B, dtype=bool)
        self.due_at = np.full(B, first, dtype=np.int64)
        self.last_log_err = np.full(B, np.nan)
        self.last_at = np.zeros(B, dtype=np.int64)

    def update(self, it: int, err: np.ndarray):
        """Record the errors ``err`` of a check at step ``it``. Returns the problems active before it, those
        due at it, their log rate per step since their last check (NaN at the first) and those of them whose
        rate was measured over steps past :data:`RELAX_START` (where ``omega`` is refined)."""
        was_active = self.active
        due = was_active & (self.due_at == it)
        with np.errstate(divide="ignore", invalid="ignore"):  # once: entering it costs as much as the rest
            log_err = np.log(err)
            log_rate = (log_err - self.last_log_err) / np.maximum(it - self.last_at, 1)
            steps = _steps_to_tol(log_err, log_rate, self.tol, self.span)
        seen = due & (self.last_at >= RELAX_START)
        self.active = was_active & ~(due & (err <= self.tol))
        self.due_at = np.minimum(np.where(due, it + steps, self.due_at), self.max_iter)
        self.last_log_err = np.where(due, log_err, self.last_log_err)
        self.last_at = np.where(due, it, self.last_at)
        return was_active, due, log_rate, seen

    def upcoming(self) -> int:
        """The step of the next check (``max_iter + 1`` when every problem has stopped)."""
        return int(self.due_at[self.active].min()) if self.active.any() else self.max_iter + 1


def _optimal_omega(rate):
    """Young's ``omega* = 2 / (1 + sqrt(1 - mu^2))`` for the plain step's rate ``mu^2`` (a tensor or an array),
    in ``[1, OMEGA_MAX]``."""
    mu2 = rate.clip(0.0, 1.0)
    return (2.0 / (1.0 + (1.0 - mu2) ** 0.5)).clip(1.0, OMEGA_MAX)


def _refine_omega(omega: np.ndarray, seen: np.ndarray, log_rate: np.ndarray) -> np.ndarray:
    """``omega`` ``(B,)`` after a check: for the problems ``seen`` over a relaxed stretch, the rate
    ``lambda = exp(log_rate)`` per step gives ``mu = (lambda + omega - 1) / (omega sqrt(lambda))`` and
    ``omega`` rises to that ``mu``'s optimum (never falls: the estimate is only valid below it); where the
    error grew, ``omega = 1``."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lam = np.exp(log_rate)
        mu = (lam + omega - 1.0) / (omega * np.sqrt(lam))
        better = _optimal_omega(mu * mu)
    w = np.where(seen & np.isfinite(mu) & (lam < 1.0), np.maximum(omega, better), omega)
    return np.where(seen & (log_rate > 0), 1.0, w)


def _steps_to_tol(log_err: np.ndarray, log_rate: np.ndarray, tol: float, cap: int) -> np.ndarray:
    """Steps until ``err <= tol`` at the per-step ``log_rate`` seen since the last check, in ``[1, cap]``
    (``cap`` without a previous check or without a contracting rate). Call it under ``np.errstate`` ignoring
    division by zero and invalid values (a zero error, a NaN rate)."""
    predicted = np.ceil((math.log(tol) - log_err) / log_rate)
    usable = np.isfinite(predicted) & (log_rate < 0)
    return np.where(usable, predicted, cap).clip(1, cap).astype(np.int64)


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
                      shift_invariant: bool = False, exact_step: Optional[Step] = None,
                      guard: Optional[Guard] = None, relaxed: Optional[RelaxedStep] = None) -> Trace:
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
    ``step`` keeps a cache (e.g. an absorbed kernel) built without a graph. ``guard``: see :class:`Guard`.
    ``relaxed``: the over-relaxed step (see :func:`iterate`); ignored with ``tol=None``, which asks for
    exactly ``max_iter`` steps of the map. The caller passes None when autograd records the unrolled
    steps (``grad="autodiff"`` differentiates those steps themselves; see
    :meth:`LinearProblem.records_graph`).
    """
    if grad == "autodiff":
        return iterate(step, z0, error, tol=tol, max_iter=max_iter, check_every=check_every, guard=guard,
                       relaxed=relaxed)
    with torch.no_grad():
        trace = iterate(step, z0.detach(), error, tol=tol, max_iter=max_iter, check_every=check_every, guard=guard,
                        relaxed=relaxed)
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
    def hook(v: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if v is None:  # no gradient reached the fixed point (autograd's undefined gradient)
            return v
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
