"""Masked fixed-point iteration shared by every iterative solver, and its three gradient modes.

A solver is a map ``z -> step(z)`` on a state tensor ``z`` of shape ``(B, k)`` (log-scalings)
plus ``error(z) -> (B,)``. Each problem stops at its own tolerance (its rows of ``z`` are frozen
by a mask); the error is computed at checks at most ``check_every`` steps apart, each costing one
device synchronisation, so the loop does not synchronise with the device at every step.

Over-relaxation (``relax=True``): from iteration :data:`RELAX_START` on, each problem takes
``z <- z + omega (step(z) - z)`` with its own ``omega``. Near the fixed point the step is linear with a
Jacobian whose eigenvalues lie in ``[lambda_min, rho]`` inside ``[0, 1)`` (for Sinkhorn's column
update: the squared singular values of the normalised plan, the constant direction excepted), which
the relaxed step maps to ``1 - omega + omega * lambda``: still contracting for every ``omega`` in
``(0, 2)``, fastest at ``omega = 2 / (2 - rho - lambda_min)``. ``rho`` is estimated on the device from
the ratio of the last two step lengths before :data:`RELAX_START` (no synchronisation); for
``lambda_min``, which would cost an eigenvalue solve, ``rho / 2`` is guessed (on the benchmark problems
it took 10-20 % fewer iterations than assuming ``lambda_min = 0``), and ``omega`` is capped at
:data:`OMEGA_MAX`. The guess is checked at every convergence check: a problem whose last two steps point
in opposite directions oscillates along a mode with ``lambda`` near 0 (its factor ``1 - omega`` is
negative), so ``lambda_min`` is smaller than guessed and it switches to ``omega = 2 / (2 - rho)``, which
contracts at least at ``rho / (2 - rho) < rho`` whatever ``lambda_min >= 0`` is (and faster than the plain
step even when ``rho`` was underestimated); a problem whose error grew switches to ``omega = 1``. Same
fixed point, so the same plan to the tolerance. References: Thibault, Chizat, Dossal, Papadakis,
"Overrelaxed Sinkhorn-Knopp algorithm for regularized optimal transport", Algorithms 14, 2021;
Lehmann, von Renesse, Sambale, Uschmajew, "A note on overrelaxation in the Sinkhorn algorithm",
Optim. Lett. 16, 2022.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol

import torch

from .result import OTConvergenceWarning

Step = Callable[[torch.Tensor], torch.Tensor]
GRAD_MODES = ("autodiff", "implicit", "detach")
RELAX_START = 5  # iterations of the plain step before omega is estimated (past the first, non-linear ones)
OMEGA_MAX = 1.9  # below 2, where the relaxed linear step stops contracting


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
            relax: bool = False) -> Trace:
    """Run ``step`` until every problem's error is <= tol (or ``max_iter``); ``tol=None`` runs all.

    Each problem is checked on its own schedule: first after ``check_every`` steps (``check_every // 2``
    with ``relax``, whose faster rate would otherwise be seen late), then at the step
    where its observed linear rate ``(err / err_prev)^(1 / steps)`` predicts ``err <= tol``, at most
    ``check_every`` steps later. A problem's schedule depends on its own errors only, so it stops at
    the same step alone or in any batch. The host reads one small tensor per check (the next check's
    step and the guard's probe), never one per step.
    """
    B = z0.shape[0]
    z = z0
    device = z0.device
    active = torch.ones(B, dtype=torch.bool, device=device)
    all_active = True  # host copy, refreshed at checks: while True the mask costs nothing
    n_iter = torch.zeros(B, dtype=torch.long, device=device)  # up to the last check
    first = min(max(1, check_every // 2) if relax else check_every, max_iter)
    due_at = torch.full((B,), first, dtype=torch.long, device=device)
    last_err = torch.full((B,), torch.nan, dtype=z0.dtype, device=device)
    last_at = torch.zeros(B, dtype=torch.long, device=device)
    history = []
    saved = (0, z)
    next_check = first
    it = 0
    omega = rho = last_step = None
    before = z  # the state before the last step (for the direction test of the relaxation)
    while it < max_iter:
        it += 1
        z_new = step(z)
        if relax:
            before, earlier = z, before
        if omega is not None:
            z_new = torch.lerp(z, z_new, omega)
        elif relax and it >= RELAX_START - 1:
            length = (z_new - z).detach().abs().amax(-1)
            if last_step is not None:
                rho = torch.nan_to_num(length / last_step, nan=0.0).clamp(0.0, 1.0)
                omega = _relaxation(rho)
            last_step = length
        z = z_new if tol is None or all_active else torch.where(active[:, None], z_new, z)
        if it != next_check:
            continue
        err = error(z).detach() if tol is not None else None
        probe = guard.probe(z, err) if guard is not None else z.new_zeros(0)
        if tol is None:
            if guard is not None and not guard.settle(probe.tolist()):
                it, z = saved
                continue
            n_iter = n_iter + (it - saved[0])
            saved = (it, z)
            next_check = min(it + check_every, max_iter)
            continue
        due = active & (due_at == it)
        new_active = active & ~(due & (err <= tol))
        new_due_at = torch.where(due, it + _steps_to_tol(err, last_err, it - last_at, tol, check_every), due_at)
        new_due_at = new_due_at.clamp_max(max_iter)
        upcoming = torch.where(new_active, new_due_at, torch.full_like(new_due_at, max_iter + 1)).min()
        values = torch.cat([torch.stack([upcoming, new_active.sum()]).to(z.dtype), probe.to(z.dtype)]).tolist()
        if guard is not None and not guard.settle(values[2:]):
            it, z = saved
            if it < RELAX_START:
                omega = rho = last_step = None
            continue
        n_iter = n_iter + active * (it - saved[0])
        saved = (it, z)
        history.append(err)
        active, due_at, all_active = new_active, new_due_at, values[1] == B
        if omega is not None:
            turned = due & (((z - before) * (before - earlier)).sum(-1) < 0)
            omega = torch.where(turned[:, None], torch.minimum(omega, (2.0 / (2.0 - rho))[:, None]), omega)
            omega = torch.where((due & (err > last_err))[:, None], torch.ones_like(omega), omega)
        last_err = torch.where(due, err, last_err)
        last_at = torch.where(due, torch.full_like(last_at, it), last_at)
        if values[0] > max_iter:
            break
        next_check = int(values[0])
    n_iter = n_iter + active * (it - saved[0])
    err = error(z).detach() if not history or tol is None else history[-1]
    if not history:
        history.append(err)
    converged = err <= tol if tol is not None else torch.isfinite(err)
    return Trace(z, n_iter, err, converged, torch.stack(history))


def _relaxation(rho: torch.Tensor) -> torch.Tensor:
    """``omega = 2 / (2 - 1.5 rho)`` in ``[1, OMEGA_MAX]`` per problem, ``(B, 1)``, for the rate ``rho`` ``(B,)``
    (``lambda_min`` guessed as ``rho / 2``)."""
    return (2.0 / (2.0 - 1.5 * rho)).clamp(1.0, OMEGA_MAX).unsqueeze(-1)


def _steps_to_tol(err: torch.Tensor, last_err: torch.Tensor, steps: torch.Tensor, tol: float,
                  cap: int) -> torch.Tensor:
    """Steps until ``err <= tol`` at the rate seen since the last check, in ``[1, cap]`` (``cap``
    without a previous check or without a contracting rate)."""
    log_rate = (torch.log(err) - torch.log(last_err)) / steps.clamp_min(1)
    predicted = torch.ceil((math.log(tol) - torch.log(err)) / log_rate)
    usable = torch.isfinite(predicted) & (log_rate < 0)
    return torch.where(usable, predicted, torch.full_like(predicted, cap)).clamp(1, cap).long()


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
                      guard: Optional[Guard] = None, relax: bool = False) -> Trace:
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
    ``relax``: over-relax (see :func:`iterate`); ignored with ``tol=None``, which asks for exactly
    ``max_iter`` steps of the map. The caller passes False when autograd records the unrolled steps
    (``grad="autodiff"`` differentiates those steps themselves; see :meth:`LinearProblem.records_graph`).
    """
    relax = relax and tol is not None
    if grad == "autodiff":
        return iterate(step, z0, error, tol=tol, max_iter=max_iter, check_every=check_every, guard=guard,
                       relax=relax)
    with torch.no_grad():
        trace = iterate(step, z0.detach(), error, tol=tol, max_iter=max_iter, check_every=check_every, guard=guard,
                        relax=relax)
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
