"""otcls.callbacks: Lightning callbacks (the RE-OT λ(t) schedule, the non-finite loss guard)."""
from otcls.callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from otcls.callbacks.prior_schedule import PriorSchedule

__all__ = ["FiniteLossGuard", "NonFiniteLossError", "PriorSchedule"]
