"""otcls.callbacks: Lightning callbacks (the RE-OT λ(t) schedule)."""
from otcls.callbacks.prior_schedule import PriorSchedule

__all__ = ["PriorSchedule"]
