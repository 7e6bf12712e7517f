"""OT inference scores: couple a set of samples to the classes with an assumed class prior b."""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, Optional, Union

import torch

from otcls.inference.bounds import BOUNDS, column_bounds

MODES = ("softmax", "tau_norm", "class_bias", "reot", "dbot", "reot_stream", "dbot_stream")
PRIOR_MODES = ("class_bias", "reot", "dbot", "reot_stream", "dbot_stream")  # modes that take a test prior
OT_MODES = ("reot", "dbot", "reot_stream", "dbot_stream")  # modes that couple a set of samples
STREAM_MODES = ("reot_stream", "dbot_stream")  # OT modes whose class potentials are carried across batches


class SmallCouplingWarning(UserWarning):
    """OT inference met a set of fewer rows than classes and scored it by the prior-shift rule instead."""


def _number(x) -> Optional[float]:
    """``float(x)`` for a real number (Python, NumPy or a one-element tensor); None for anything else."""
    if isinstance(x, (bool, str, bytes)) or x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def check_logits(logits, what: str = "logits") -> torch.Tensor:
    """Raise ValueError unless ``logits`` is a floating-point ``(n >= 1, C)`` tensor whose entries are all
    finite (NaN / inf logits have no argmax: a NaN row would silently predict class 0)."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{what} must be a torch tensor of shape (n, C); got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"{what} must be floating point; got dtype {logits.dtype} (cast with .float())")
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"{what} must be (n >= 1, C); got {tuple(logits.shape)}")
    bad = ~torch.isfinite(logits).all(1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{what} have NaN or inf entries in {rows.numel()} of {logits.shape[0]} rows (first rows "
                         f"{rows[:5].tolist()}); inference needs finite logits: check the model / checkpoint")
    return logits


def prior_shift_scores(logits: torch.Tensor, prior: torch.Tensor,
                       source_prior: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``softmax(z + log b - log pi_s)`` (Saerens et al., 2002): each row's posterior moved from the prior
    ``pi_s`` the softmax is calibrated to (uniform when None) to the test prior ``b``, one row at a time."""
    log_b = torch.log(prior.to(logits))
    log_s = 0.0 if source_prior is None else torch.log(source_prior.to(logits))
    return (logits + log_b - log_s).softmax(-1)


def ot_scores(logits: torch.Tensor, prior: Optional[torch.Tensor], *, mode: str, eps: float = 1.0,
              delta: Union[float, str] = "binomial", level: float = 0.95,
              tol: Optional[float] = 1e-4, max_iter: int = 5000, batch_size: Optional[int] = None,
              seed: int = 0, min_rows: Optional[int] = None,
              source_prior: Union[torch.Tensor, Callable[[], torch.Tensor], None] = None,
              stream_step: float = 1.0, passes: int = 1) -> torch.Tensor:
    """Row-normalised coupling n·P between samples and classes, cost C = -logits.

    ``reot``: P ∈ U(1/n, b) (balanced Sinkhorn, entropic regulariser ``eps``).
    ``dbot``: rows 1/n, columns in [l, u] (exact DB-OT dual ascent). ``delta="binomial"`` (default):
    ``[l_j, u_j]`` is the central binomial interval at ``level`` of the class-j share ``N_j / n`` of a
    coupling of ``n`` rows drawn with prior ``b`` (:func:`otcls.inference.bounds.column_bounds`), i.e. the
    constraint is as loose as the batch's own sampling noise; a number ``delta`` gives ``[(1-δ)·b, (1+δ)·b]``.

    ``reot_stream`` / ``dbot_stream``: the batches (``batch_size`` required, same seeded order) are served
    one after another by :class:`otcls.inference.streaming.StreamingCoupling`, which carries the class
    potentials across batches (averaged stochastic semi-dual ascent, step ``stream_step / sqrt(k)``; the
    stream is replayed ``passes`` times) and converges to the whole-set coupling. ``prior=None`` estimates
    the prior on the stream (online EM against ``source_prior``); ``batch_size=None`` is the whole-set
    coupling itself.
    ``batch_size=None`` couples all n rows at once (whole set). Otherwise the rows are put in a
    seeded random order and cut into batches of ``batch_size`` (the last one shorter), and each
    batch gets its own coupling with the same ``b`` — the DB-OT paper's per-batch inference, whose
    bounds absorb the batch's sampling noise. Predict with ``argmax_j`` of the result. The default
    ``tol`` (relative marginal error 1e-4) is loose on purpose: it fixes the argmax; no gradient
    is kept (inference only).

    Small sets: a coupling of fewer rows than ``min_rows`` (default: the number of classes C) cannot
    follow its samples, since its columns must still carry the masses ``b`` (one row is always given
    the prior itself). So a short last batch is merged with the batch before it, and a set that is
    short as a whole (no batch before it) is scored by :func:`prior_shift_scores` against
    ``source_prior`` (a tensor, a function returning one, or None: uniform) with a
    :class:`SmallCouplingWarning`.

    Logits in a type below float32's precision (bfloat16, float16) are cast up: the coupling is solved, and
    the scores returned, in float32 (``exp(-C/eps)`` in bfloat16 keeps 3 digits and misses its marginals).
    """
    if mode not in OT_MODES:
        raise ValueError(f"ot_scores mode must be one of {', '.join(OT_MODES)}; got '{mode}'")
    if _number(eps) is None or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
    check_logits(logits)
    if mode.startswith("dbot") and not (delta in BOUNDS or (_number(delta) is not None and delta >= 0)):
        raise ValueError(f"dbot inference needs a number delta >= 0 or one of {', '.join(BOUNDS)}; got {delta!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"OT inference batch_size must be an integer >= 1 or None (whole set); got {batch_size!r}")
    if mode in STREAM_MODES:
        return _stream(logits, prior, mode, eps, delta, level, tol, max_iter, batch_size, seed, source_prior,
                       stream_step, passes)
    if not isinstance(prior, torch.Tensor) or prior.shape != (logits.shape[1],):
        raise ValueError(f"prior must be a ({logits.shape[1]},) tensor; got "
                         f"{tuple(prior.shape) if isinstance(prior, torch.Tensor) else type(prior).__name__}")
    if torch.finfo(logits.dtype).bits < 32:
        logits = logits.float()
    prior = prior.detach().to(dtype=torch.float64)
    if not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()) or not float(prior.sum()) > 0:
        raise ValueError(f"prior must be finite and non-negative with a positive sum; got {prior.tolist()}")
    prior = (prior / prior.sum()).to(logits)  # normalised in float64, then cast: sums to 1 in logits' dtype
    n, num_classes = logits.shape
    min_rows = num_classes if min_rows is None else int(min_rows)
    if n < min_rows:
        warnings.warn(SmallCouplingWarning(
            f"{mode} inference on {n} row(s), fewer than min_rows={min_rows} (the number of classes by default): "
            "a coupling this small is fixed by the prior, not by the samples, so these rows are scored by the "
            "prior-shift rule softmax(z + log b - log pi_s) instead; predict a larger set (or the whole set) to "
            "use OT"), stacklevel=2)
        source = source_prior() if callable(source_prior) else source_prior
        return prior_shift_scores(logits, prior, source)
    if batch_size is None or batch_size >= n:
        return _coupling(logits, prior, mode, eps, delta, level, tol, max_iter)
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=gen).to(logits.device)
    k = n // batch_size
    if 0 < n - k * batch_size < min_rows:
        k -= 1  # the short remainder joins the last full batch
    full = k * batch_size
    scores = torch.empty_like(logits)
    if k:
        head = logits[order[:full]].reshape(k, batch_size, -1)
        scores[order[:full]] = _coupling(head, prior, mode, eps, delta, level, tol, max_iter).reshape(full, -1)
    if full < n:
        scores[order[full:]] = _coupling(logits[order[full:]], prior, mode, eps, delta, level, tol, max_iter)
    return scores


def _stream(logits, prior, mode, eps, delta, level, tol, max_iter, batch_size, seed, source_prior, step, passes):
    """``ot_scores`` of a stream mode: the streamed batches, or (``batch_size=None``) the whole-set coupling."""
    from otcls.inference.streaming import stream_scores

    base = mode[: -len("_stream")]
    source = source_prior() if callable(source_prior) else source_prior
    if prior is None:
        if batch_size is None:
            from otcls.inference.priors import em_prior
            src = (torch.full((logits.shape[1],), 1.0 / logits.shape[1], dtype=torch.float64) if source is None
                   else torch.as_tensor(source, dtype=torch.float64).cpu())
            prior = em_prior(logits.detach().double().softmax(-1).cpu(), src).to(logits)
        else:
            return stream_scores(logits, None, mode=base, batch_size=batch_size, seed=seed, passes=passes, eps=eps,
                                 delta=delta, level=level, source_prior=source, step=step)
    if batch_size is None:
        return ot_scores(logits, prior, mode=base, eps=eps, delta=delta, level=level, tol=tol, max_iter=max_iter)
    if not isinstance(prior, torch.Tensor) or prior.shape != (logits.shape[1],):
        raise ValueError(f"prior must be a ({logits.shape[1]},) tensor or None (estimated on the stream)")
    return stream_scores(logits, prior, mode=base, batch_size=batch_size, seed=seed, passes=passes, eps=eps,
                         delta=delta, level=level, source_prior=source, step=step)


def _coupling(logits: torch.Tensor, prior: torch.Tensor, mode: str, eps: float, delta: Union[float, str],
              level: float, tol: Optional[float], max_iter: int) -> torch.Tensor:
    """n·P for logits ``(n, C)`` or a stack of equal batches ``(k, n, C)`` (solved as one batched problem)."""
    from otcls.losses.base import autocast_off
    from otcls.ot import solve

    n = logits.shape[-2]
    b = prior.to(logits)
    a = torch.full((n,), 1.0 / n, dtype=logits.dtype, device=logits.device)
    with autocast_off(logits.device):  # under a caller's autocast the solver's products would run in bf16 / fp16
        if mode == "reot":
            res = solve(-logits, a, b, eps=eps, tol=tol, max_iter=max_iter, grad="detach")
        else:
            lower, upper = column_bounds(b, n, delta=delta, level=level)
            res = solve(-logits, a, eps=eps, lower=lower, upper=upper, tol=tol, max_iter=max_iter, grad="detach")
    return res.plan * n


def inference_kwargs(table: Optional[Dict[str, Dict[str, Any]]], mode: str) -> Dict[str, Any]:
    """``table[mode]``; a stream mode without its own entry takes its base mode's (``dbot_stream`` -> ``dbot``)."""
    table = table or {}
    if mode in table or mode not in STREAM_MODES:
        return dict(table.get(mode, {}))
    return dict(table.get(mode[: -len("_stream")], {}))
