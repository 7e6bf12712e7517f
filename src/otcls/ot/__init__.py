"""Pure-PyTorch optimal-transport solvers: entropic OT, RE-OT, DB-OT, barycenters, projections.

Problem → solver → result: :class:`LinearProblem` holds the checked inputs, :func:`solve`
dispatches to a named solver, :class:`OTResult` holds plan, potentials and convergence record.
Everything is batched over a leading dimension, differentiable and device-agnostic; ``solve`` works
in the scaling domain where the kernel's range allows it and in the log domain elsewhere.
"""
from .barycenter import BarycenterResult, barycenter
from .dbot import dbot_ascent, dbot_ascent_scaling, dbot_cyclic, dbot_dykstra, dbot_three_scaling
from .domain import kernel_log_range, scaling_safe
from .prior import ProximalPointResult, deblur_prior, proximal_point, scale_prior
from .problem import LinearProblem
from .projection import barycentric_projection, class_barycenters
from .result import OTConvergenceWarning, OTNumericalError, OTResult
from .semi_relaxed import semi_relaxed
from .sinkhorn import sinkhorn, sinkhorn_log
from .solve import SOLVERS, solve

__all__ = [
    "BarycenterResult", "ProximalPointResult", "barycenter", "barycentric_projection", "class_barycenters",
    "deblur_prior", "proximal_point", "scale_prior",
    "LinearProblem", "OTConvergenceWarning", "OTNumericalError", "OTResult", "SOLVERS", "dbot_ascent", "dbot_ascent_scaling", "dbot_cyclic",
    "dbot_dykstra", "dbot_three_scaling", "kernel_log_range", "scaling_safe", "semi_relaxed", "sinkhorn",
    "sinkhorn_log", "solve",
]
