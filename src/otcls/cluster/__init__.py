"""Size-bounded clustering with DB-OT barycenters (DB-OT paper §4)."""
from .estimator import DBOTClustering
from .rounding import integer_size_bounds, round_to_sizes

__all__ = ["DBOTClustering", "integer_size_bounds", "round_to_sizes"]
