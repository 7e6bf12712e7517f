"""Test-time inference: test priors (incl. EM estimation), OT couplings, whole-set prediction under DDP."""
from otcls.inference.priors import PRIOR_NAMES, em_prior, resolve_prior, reverse_prior
from otcls.inference.bounds import column_bounds
from otcls.inference.scores import MODES, STREAM_MODES, ot_scores
from otcls.inference.streaming import StreamingCoupling, stream_scores
from otcls.inference.whole_set import gather_unique, whole_set_predict

__all__ = ["PRIOR_NAMES", "MODES", "em_prior", "resolve_prior", "reverse_prior", "ot_scores", "STREAM_MODES",
           "StreamingCoupling", "stream_scores", "column_bounds",
           "gather_unique", "whole_set_predict"]
