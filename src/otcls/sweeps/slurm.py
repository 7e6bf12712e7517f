"""Sweeps on SLURM through submitit, with the dependencies in the scheduler.

The runs that need no other run go in as one job array; every fine-tuning or teacher-using run is a job of its
own with ``--dependency=afterok:<its seed's parent job>``, and the summary is a last small job with
``afterany`` on all of them. Submission returns at once: nothing on the login node has to stay alive. Job ids
go to ``OUT/slurm/jobs.json``; a relaunch skips finished runs, leaves queued or running jobs alone (their
dependants wait on them) and resubmits the rest, which resume from their own ``last.ckpt``. A task that
reaches its time limit is requeued by submitit and resumes the same way.

``--slurm-cluster local`` runs the same jobs as local processes (submitit's local executor, which has no
dependencies: the sweep waits for each wave there); ``debug`` runs them in this process.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from otcls.sweeps.plan import Run, SweepSettings, is_finished

CLUSTERS = ("slurm", "local", "debug")
ALIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


@dataclass
class SlurmOptions:
    """What every run's job asks SLURM for. ``sbatch`` holds further ``#SBATCH`` parameters by their sbatch
    names (``{"constraint": "a100", "exclude": "node3"}``)."""

    cluster: str = "slurm"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    time_min: int = 24 * 60
    mem_gb: Optional[int] = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    sbatch: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise ValueError(f"--slurm-cluster must be one of {', '.join(CLUSTERS)}; got '{self.cluster}'")
        for name, value, low in (("--slurm-time", self.time_min, 1), ("--slurm-cpus", self.cpus_per_job, 1),
                                 ("--slurm-gpus", self.gpus_per_job, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.mem_gb is not None and self.mem_gb < 1:
            raise ValueError(f"--slurm-mem must be >= 1 (GB), got {self.mem_gb}")

    def sbatch_parameters(self, dependency: Optional[str] = None, summary: bool = False) -> Dict[str, object]:
        """submitit's ``SlurmExecutor`` parameters of one job (``summary``: the small CPU job of the summary)."""
        params: Dict[str, object] = {"job_name": "otcls-summary" if summary else "otcls-sweep",
                                     "time": 30 if summary else self.time_min, "nodes": 1, "ntasks_per_node": 1,
                                     "cpus_per_task": 2 if summary else self.cpus_per_job}
        if self.gpus_per_job and not summary:
            params["gpus_per_node"] = self.gpus_per_job
        if self.mem_gb and not summary:
            params["mem"] = f"{self.mem_gb}GB"
        for key in ("partition", "account", "qos"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        extra = dict(self.sbatch)
        if dependency:
            params["dependency"] = dependency
            # a dependency that can no longer be met (the parent failed) cancels the job instead of leaving it
            # pending forever
            extra.setdefault("kill-on-invalid-dep", "yes")
        if extra:
            params["additional_parameters"] = extra
        return params


def parse_sbatch(items: List[str]) -> Dict[str, str]:
    """``["constraint=a100", "exclude=node3"]`` → ``{"constraint": "a100", "exclude": "node3"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"--sbatch takes KEY=VALUE (an sbatch option without its dashes, e.g. "
                             f"constraint=a100); got '{item}'")
        out[key] = value
    return out


class RunTask:
    """One run as a submitit task: resumes from its own ``last.ckpt`` when there is one, and is requeued by
    submitit (``checkpoint``) when the job reaches its time limit."""

    def __init__(self, settings: SweepSettings, run: Run) -> None:
        self.settings, self.run = settings, run

    def __call__(self) -> Tuple[int, float]:
        from otcls.sweeps.local import execute

        rc, secs, _ = execute(self.settings, self.run)
        if rc != 0:  # a failed job, so that afterok dependants do not start
            raise RuntimeError(f"{self.run.key}: otcls fit exited with status {rc}; see {self.run.folder}/output.log")
        return rc, secs

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class SummaryTask:
    def __init__(self, settings: SweepSettings) -> None:
        self.settings = settings

    def __call__(self) -> int:
        from otcls.sweeps.cli import summarize_sweep

        return summarize_sweep(self.settings)


def _executor(folder: str, opts: SlurmOptions, **params):
    from otcls._extras import require

    require("slurm")
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=None if opts.cluster == "slurm" else opts.cluster)
    if opts.cluster == "slurm":
        executor.update_parameters(**{f"slurm_{k}": v for k, v in params.items()})
    else:  # the local executor takes the generic names only
        executor.update_parameters(timeout_min=params["time"], cpus_per_task=params["cpus_per_task"],
                                   gpus_per_node=params.get("gpus_per_node", 0), name=params["job_name"])
    return executor


def _alive(job_ids: List[str]) -> set:
    """The ids among ``job_ids`` that SLURM still has queued or running."""
    if not job_ids or shutil.which("squeue") is None:
        return set()
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True)
    alive = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ALIVE:
            alive.add(parts[0])
    return alive & set(job_ids)


def _jobs_file(settings: SweepSettings) -> str:
    return os.path.join(settings.out, "slurm", "jobs.json")


def submit(settings: SweepSettings, runs: List[Run], opts: SlurmOptions) -> Dict[str, str]:
    """Submit the unfinished ``runs`` and the summary job to SLURM and return at once: ``{run key: job id}``."""
    folder = os.path.join(settings.out, "slurm")
    os.makedirs(folder, exist_ok=True)
    previous: Dict[str, str] = {}
    if os.path.isfile(_jobs_file(settings)):
        with open(_jobs_file(settings)) as fh:
            previous = json.load(fh)
    alive = _alive(list(previous.values()))
    jobs = {k: v for k, v in previous.items() if v in alive and k != "summary"}
    todo = [r for r in runs if not is_finished(r.folder) and r.key not in jobs]
    roots = [r for r in todo if not r.parent_folder]
    if roots:
        executor = _executor(folder, opts, **opts.sbatch_parameters())
        with executor.batch():
            handles = [(r, executor.submit(RunTask(settings, r))) for r in roots]
        jobs.update({r.key: h.job_id for r, h in handles})
    for r in (r for r in todo if r.parent_folder):
        dependency = f"afterok:{jobs[r.parent_key]}" if r.parent_key in jobs else None
        executor = _executor(folder, opts, **opts.sbatch_parameters(dependency))
        jobs[r.key] = executor.submit(RunTask(settings, r)).job_id
    waits = sorted(set(jobs.values()))
    summary = _executor(folder, opts, **opts.sbatch_parameters(
        f"afterany:{':'.join(waits)}" if waits else None, summary=True)).submit(SummaryTask(settings))
    jobs["summary"] = summary.job_id
    with open(_jobs_file(settings), "w") as fh:
        json.dump(jobs, fh, indent=1)
    return jobs


def run_waves(settings: SweepSettings, runs: List[Run], opts: SlurmOptions) -> Dict[str, int]:
    """``local`` / ``debug``: the same tasks through submitit, waiting for each wave (no scheduler here to hold
    the dependants); ``{run key: exit status}``."""
    folder = os.path.join(settings.out, "slurm")
    status: Dict[str, int] = {}
    for wave in ([r for r in runs if not r.parent_folder], [r for r in runs if r.parent_folder]):
        wave = [r for r in wave if not r.parent_folder or status.get(r.parent_key) == 0]
        if not wave:
            continue
        executor = _executor(folder, opts, **opts.sbatch_parameters())
        with executor.batch():
            handles = [(r, executor.submit(RunTask(settings, r))) for r in wave]
        print(f"otcls sweep: {len(wave)} run(s) submitted to submitit's {opts.cluster} executor")
        for r, handle in handles:
            try:
                status[r.key] = int(handle.result()[0])
            except Exception as exc:  # submitit re-raises the task's failure here; report it, keep the others
                print(f"otcls sweep: task {r.key} failed: {exc}")
                status[r.key] = 1
    return status


def dry_run_text(settings: SweepSettings, runs: List[Run], opts: SlurmOptions) -> List[str]:
    """What :func:`submit` would send: the sbatch header of a run's job and of a dependant, and the graph."""
    from submitit.slurm.slurm import _make_sbatch_string  # the only way to render submitit's sbatch file offline

    dependants = any(r.parent_folder for r in runs)
    lines = ["sbatch parameters of a dependant's job (the first wave's array: the same without --dependency and "
             "--kill-on-invalid-dep):" if dependants else "sbatch parameters of a run's job:"]
    header = _make_sbatch_string(command="<run>", folder=os.path.join(settings.out, "slurm"),
                                 **opts.sbatch_parameters(dependency="afterok:<parent job>" if dependants else None))
    lines += ["  " + line for line in header.splitlines() if line.startswith("#SBATCH")]
    lines.append("dependency graph (job ← what it waits for):")
    roots = [r.key for r in runs if not r.parent_folder]
    lines.append(f"  array [{', '.join(roots)}] ← nothing")
    for r in runs:
        if r.parent_folder:
            lines.append(f"  {r.key} ← afterok {r.parent_key}")
    lines.append(f"  summary ← afterany every job above ({shlex.quote(os.path.join(settings.out, 'summary.md'))})")
    return lines
