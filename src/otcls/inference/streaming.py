r"""Streaming OT inference: class potentials carried across test batches (stochastic semi-dual ascent).

The whole-set coupling of N rows (cost ``C = -z``, rows ``1/N``, regulariser ε) is fixed by its class
potentials ``g`` (C,) alone: row i's scores are ``softmax((z_i + g) / ε)``. ``g`` maximises the semi-dual
(Genevay, Cuturi, Peyré & Bach, NeurIPS 2016, "Stochastic optimization for large-scale optimal transport")

.. math::
    F(g) = \frac1N\sum_i -\varepsilon \log\sum_j e^{(z_{ij}+g_j)/\varepsilon} + \sum_j \min(g_j l_j,\ g_j u_j),

with ``l = u = b`` for RE-OT inference (balanced, ``U(1/N, b)``; the last term is ``<g, b>``) and
``l, u`` the DB-OT column bounds. Its supergradient in ``g_j`` is ``t_j - c_j(g)``: the target column mass
``t_j`` (``b_j``; for DB-OT ``l_j`` if ``g_j > 0``, ``u_j`` if ``g_j < 0``, ``clip(c_j, l_j, u_j)`` at 0)
minus the column mass ``c_j(g) = mean_i softmax_j((z_i + g)/ε)``, which a batch estimates without bias.
:class:`StreamingCoupling` takes one step per served batch,

.. math::
    g_j \leftarrow g_j + \eta_k\,\varepsilon\,(t_j - \hat c_j)/b_j,\qquad \eta_k = \eta_0/\sqrt{k},

an unbiased stochastic supergradient step (``ĉ`` the batch's column mass) with the fixed diagonal
preconditioner ``ε / b`` (the inverse curvature scale of ``F``; at ``η = 1`` on the whole set it is the
first-order Sinkhorn column update ``ε (log b - log c)``), and
scores each batch with the averaged iterate ``ḡ_k = Σ_t t·g_t / Σ_t t`` (averaged SGD, as in Genevay et
al.; the weights ∝ t of Shamir & Zhang, 2013, forget the start faster than the uniform average). For DB-OT a step that would carry ``g_j`` across 0 stops at 0 (the kink of ``min(g l, g u)``).
``g`` starts at ``ε (log b - log π_s)``: the first batches are scored like the class-aware bias.

With ``prior=None`` the test prior is estimated on the stream as well: online EM (Saerens et al., 2002,
one stochastic-approximation step per batch, ``π ← π + ρ_k (mean_i q_i(π) - π)``, ``ρ_k = min(1, η_k)``,
``q_i ∝ softmax(z_i) · π / π_s``), whose fixed point is the whole-set EM estimate.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from otcls.inference.bounds import column_bounds

_TINY = 1e-30


class StreamingCoupling:
    """Serve OT inference one batch at a time; :meth:`step` updates the potentials and scores the batch.

    Args:
        num_classes: C.
        prior: test prior ``b`` (C,), or None to estimate it online (EM, see the module docstring).
        mode: ``reot`` (columns = b) or ``dbot`` (columns within the bounds of ``delta``).
        eps: entropic regulariser (the ε of the whole-set coupling this stream converges to).
        delta: DB-OT bounds: a number (``[(1-δ) b, (1+δ) b]``) or ``"binomial"`` (per-class binomial
            interval at ``level`` for the number of rows served so far, see :func:`column_bounds`).
        source_prior: the prior ``softmax(z)`` is calibrated to (uniform when None); sets the start
            ``g = ε (log b - log π_s)`` and the EM posteriors.
        step: ``η0`` of the step rule ``η_k = η0 / sqrt(k)``.
    """

    def __init__(self, num_classes: int, prior: Optional[torch.Tensor] = None, *, mode: str = "reot",
                 eps: float = 1.0, delta: Union[float, str] = 0.1, level: float = 0.95,
                 source_prior: Optional[torch.Tensor] = None, step: float = 1.0) -> None:
        if mode not in ("reot", "dbot"):
            raise ValueError(f"StreamingCoupling mode must be 'reot' or 'dbot'; got {mode!r}")
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
        if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
            raise ValueError(f"step (η0) must be a finite number > 0; got {step!r}")
        self.num_classes, self.mode, self.eps, self.delta, self.level, self.eta0 = (
            int(num_classes), mode, float(eps), delta, level, float(step))
        c = self.num_classes
        src = torch.full((c,), 1.0 / c, dtype=torch.float64) if source_prior is None else \
            _probability(source_prior, c, "source_prior")
        if (src <= 0).any():
            raise ValueError("source_prior must be positive in every class (it divides the EM posteriors)")
        self.source_prior = src
        self.estimate = prior is None
        self.prior = src.clone() if prior is None else _probability(prior, c, "prior")
        self.g = self.eps * (self.prior.clamp_min(_TINY).log() - src.log())  # the class-aware bias
        self.g_avg = self.g.clone()
        self.k = 0
        self.rows = 0

    def _targets(self, col: torch.Tensor) -> torch.Tensor:
        b = self.prior
        if self.mode == "reot":
            return b
        lo, hi = column_bounds(b, self.rows, delta=self.delta, level=self.level)
        return torch.where(self.g > 0, lo, torch.where(self.g < 0, hi, torch.minimum(torch.maximum(col, lo), hi)))

    @torch.no_grad()
    def update(self, logits: torch.Tensor) -> None:
        """One ascent step on the batch ``logits`` (m, C) (and one online-EM step if the prior is estimated)."""
        z = _batch(logits, self.num_classes)
        self.k += 1
        self.rows += z.shape[0]
        eta = self.eta0 / math.sqrt(self.k)
        if self.estimate:
            q = (z + (self.prior.clamp_min(_TINY) / self.source_prior).log()).softmax(-1).mean(0)
            self.prior = self.prior + min(1.0, eta) * (q - self.prior)
            self.prior = self.prior / self.prior.sum()
        col = ((z + self.g) / self.eps).softmax(-1).mean(0)
        t = self._targets(col)
        # preconditioned by the fixed 1/b (not by the batch's own ĉ, e.g. a log ratio: E[log ĉ] != log E[ĉ]
        # would bias the fixed point on small batches of rare classes)
        new = self.g + eta * self.eps * (t - col) / self.prior.clamp_min(_TINY)
        if self.mode == "dbot":
            new = torch.where(new * self.g < 0, torch.zeros_like(new), new)  # stop at the kink of min(g l, g u)
        self.g = new
        self.g_avg = self.g_avg + 2.0 * (self.g - self.g_avg) / (self.k + 1)  # weights ∝ k

    @torch.no_grad()
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Row-normalised coupling of ``logits`` under the averaged potentials: ``softmax((z + ḡ) / ε)``."""
        z = _batch(logits, self.num_classes)
        return ((z + self.g_avg) / self.eps).softmax(-1).to(logits)

    def step(self, logits: torch.Tensor) -> torch.Tensor:
        """:meth:`update` on the batch, then its :meth:`scores` (the batch is served after it is seen)."""
        self.update(logits)
        return self.scores(logits)

    @property
    def potentials(self) -> torch.Tensor:
        """The averaged class potentials ``ḡ`` (C,), float64, in cost units (the ``g`` of ``otcls.ot``)."""
        return self.g_avg.clone()


def stream_scores(logits: torch.Tensor, prior: Optional[torch.Tensor], *, mode: str, batch_size: int,
                  seed: int = 0, passes: int = 1, **kwargs) -> torch.Tensor:
    """Score ``logits`` (n, C) as a stream: rows in a seeded random order, cut into batches of
    ``batch_size``, each served by :meth:`StreamingCoupling.step`. With ``passes > 1`` the stream is
    replayed (a longer stream from the same distribution) and each row keeps the scores it got in the last
    pass. ``kwargs`` go to :class:`StreamingCoupling`."""
    if isinstance(passes, bool) or int(passes) != passes or passes < 1:
        raise ValueError(f"passes must be an integer >= 1; got {passes!r}")
    n, c = logits.shape
    stream = StreamingCoupling(c, prior, mode=mode, **kwargs)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).to(logits.device)
    out = torch.empty_like(logits)
    for _ in range(int(passes)):
        for start in range(0, n, int(batch_size)):
            idx = order[start:start + int(batch_size)]
            out[idx] = stream.step(logits[idx])
    return out


def _probability(x, c: int, what: str) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64).detach().cpu().flatten()
    if x.numel() != c or not bool(torch.isfinite(x).all()) or bool((x < 0).any()) or not float(x.sum()) > 0:
        raise ValueError(f"{what} must be {c} finite non-negative class masses with a positive sum; got {x.tolist()}")
    return x / x.sum()


def _batch(logits: torch.Tensor, c: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] != c or logits.shape[0] == 0:
        raise ValueError(f"a stream batch must be a (m >= 1, {c}) tensor of logits; got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("a stream batch has NaN or inf logits; inference needs finite logits")
    return logits.detach().double().cpu()


__all__ = ["StreamingCoupling", "stream_scores"]
