"""otcls.callbacks: Lightning callbacks (the RE-OT λ(t) schedule, the non-finite loss guard, the prediction writer)."""
from otcls.callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from otcls.callbacks.prediction_writer import PredictionWriter
from otcls.callbacks.prior_schedule import PriorSchedule

__all__ = ["FiniteLossGuard", "NonFiniteLossError", "PredictionWriter", "PriorSchedule"]
