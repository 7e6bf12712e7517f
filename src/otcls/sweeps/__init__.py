"""Launching sweeps: a plan of runs (:mod:`~otcls.sweeps.plan`), run here with GPU slots
(:mod:`~otcls.sweeps.local`) or on SLURM through submitit (:mod:`~otcls.sweeps.slurm`); ``otcls sweep``
(:mod:`~otcls.sweeps.cli`). The tables and figures of a finished sweep come from :mod:`otcls.reporting`."""
