"""Sweeps on SLURM through submitit: one job array per wave of runs, each task one ``otcls fit``.

``otcls sweep ... --slurm`` submits the runs that need no other run as one array, waits for it, then the
fine-tuning runs (``--finetune``) as a second array, since they start from the first wave's checkpoints.
``--slurm-cluster local`` runs the same arrays as local processes (submitit's local executor: how the
tests exercise this path without a cluster); ``debug`` runs them in this process.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

CLUSTERS = ("slurm", "local", "debug")


def run_task(cmd: List[str], run_dir: str) -> Tuple[int, float]:
    """One array task: the Lightning run, as a local sweep runs it (output in ``run_dir/output.log``);
    ``(exit status, seconds)``."""
    from otcls.reporting.sweep import _run

    return _run(cmd, run_dir, stream=False)


def make_executor(folder: str, cluster: str, *, partition: Optional[str] = None, gpus_per_task: int = 0,
                  cpus_per_task: int = 4, timeout_min: int = 24 * 60, parallelism: int = 32):
    """A submitit ``AutoExecutor`` for ``cluster`` (``slurm``, ``local`` or ``debug``) with the job-array settings."""
    from otcls._extras import require

    require("slurm")
    import submitit

    if cluster not in CLUSTERS:
        raise ValueError(f"--slurm-cluster must be one of {', '.join(CLUSTERS)}; got '{cluster}'")
    executor = submitit.AutoExecutor(folder=folder, cluster=None if cluster == "slurm" else cluster)
    params = dict(timeout_min=timeout_min, cpus_per_task=cpus_per_task, tasks_per_node=1, nodes=1,
                  slurm_array_parallelism=parallelism, name="otcls-sweep")
    if gpus_per_task:
        params["gpus_per_node"] = gpus_per_task
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    return executor


def run_array(executor, jobs: List[Tuple[str, List[str], str]]) -> Dict[str, Tuple[int, float]]:
    """Submit ``jobs`` (``(key, command, run_dir)``) as one array, wait, return ``{key: (exit status, seconds)}``.
    A task that died without returning (killed, out of time) counts as exit status 1."""
    if not jobs:
        return {}
    with executor.batch():
        handles = [(key, executor.submit(run_task, cmd, run_dir)) for key, cmd, run_dir in jobs]
    out = {}
    for key, handle in handles:
        try:
            out[key] = tuple(handle.result())
        except Exception as exc:  # submitit raises the task's failure here; report it, keep the others
            print(f"otcls sweep: SLURM task {key} failed: {exc}")
            out[key] = (1, 0.0)
    return out
