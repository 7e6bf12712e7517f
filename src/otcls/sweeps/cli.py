"""``otcls sweep``: run a grid of method configs × seeds here or on SLURM, then write a mean ± std table.

    otcls sweep --base configs/base/fmnist.yaml --methods configs/fmnist_lt/ce.yaml configs/fmnist_lt/dbot.yaml \\
                --seeds 0 1 2 --out results/demo --jobs 2 --finetune dbot=ce -- --trainer.max_epochs 5

Every (method config, seed) is one ``otcls fit --test_after_fit true`` with run folder
``OUT/runs/<method>/seed<s>``; ``--jobs N`` runs N at a time; ``--gpus 0,1,2,3 [--gpus-per-run K]
[--runs-per-gpu R]`` gives every run a group of K GPUs through ``CUDA_VISIBLE_DEVICES`` (R runs share a group);
``--slurm`` submits the runs as SLURM jobs (:mod:`otcls.sweeps.slurm`); ``--dry-run`` prints what would run.
Arguments after ``--`` go to every run. ``--finetune dbot=ce`` starts each ``dbot`` run from the selected
checkpoint of the ``ce`` run of its seed, ``--teacher reot_teacher=ce`` gives it that checkpoint as its teacher.

A relaunch reuses finished runs (``test_results.json``), resumes unfinished ones from their own ``last.ckpt``
(same W&B run; λ(t), optimiser and scheduler state restored) and starts the others over in a fresh folder
(an earlier attempt without a checkpoint is kept as ``seed<s>.attempt-K``); ``--force`` starts every run
over. Ctrl-C or SIGTERM stops every run with the sweep. The summary (:mod:`otcls.reporting.summary`) is
written at the end, or by ``--summarize-only``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Dict, List, Optional

from otcls.sweeps.plan import (DEPENDENCY_FLAGS, Run, SweepSettings, is_finished, last_checkpoint, parse_dependencies,
                               set_aside)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otcls sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", nargs="*", default=[], help="config files given first to every run (shared settings)")
    p.add_argument("--methods", nargs="+", required=True, help="one config file per method (its stem names it)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (seed_everything and data.init_args.seed)")
    p.add_argument("--out", required=True, help="output folder (runs/ and summary.{json,md})")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time (CPU; ignored with --gpus)")
    p.add_argument("--gpus", default=None, metavar="0,1,2,3",
                   help="GPU ids to spread the runs over: each run gets its own slot through CUDA_VISIBLE_DEVICES "
                        "and waits for a free one")
    p.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per run (a slot; DDP when > 1)")
    p.add_argument("--runs-per-gpu", type=int, default=1,
                   help="runs sharing each GPU (group) at once, with --gpus: ResNet-32 on CIFAR uses a sliver of a "
                        "current GPU (see docs/images.md for a rule of thumb)")
    p.add_argument("--method-overrides", default=None, metavar="DIR",
                   help="after each method config M.yaml, also give DIR/M.yaml where it exists (a benchmark's "
                        "changes to a shared method config, e.g. a shorter schedule)")
    p.add_argument("--finetune", nargs="*", default=[], metavar="CHILD=PARENT",
                   help="start each CHILD run from the selected checkpoint of the PARENT run of the same seed "
                        "(e.g. dbot=ce: the DB-OT loss fine-tunes the softmax model)")
    p.add_argument("--teacher", nargs="*", default=[], metavar="CHILD=PARENT",
                   help="give each CHILD run the selected checkpoint of the PARENT run of the same seed as its "
                        "teacher (e.g. reot_teacher=ce)")
    p.add_argument("--force", action="store_true", help="start every run over (earlier attempts are set aside)")
    p.add_argument("--no-data-seed", action="store_true",
                   help="do not pass --data.init_args.seed (for DataModules without a seed argument)")
    p.add_argument("--dry-run", action="store_true",
                   help="print every run (its environment and command; with --slurm the sbatch parameters and the "
                        "dependency graph) and run nothing")
    p.add_argument("--summarize-only", action="store_true", help="write the summary of the finished runs, run nothing")
    s = p.add_argument_group("SLURM (with --slurm)")
    s.add_argument("--slurm", action="store_true",
                   help="submit every run as a SLURM job (dependants wait on their parent through afterok) and return")
    s.add_argument("--slurm-cluster", default="slurm", help="slurm, or local / debug to run the jobs here")
    s.add_argument("--slurm-partition", default=None, help="partition")
    s.add_argument("--slurm-account", default=None, help="account to charge")
    s.add_argument("--slurm-qos", default=None, help="quality of service")
    s.add_argument("--slurm-time", type=int, default=24 * 60, help="time limit per run, minutes (requeued after)")
    s.add_argument("--slurm-mem", type=int, default=None, help="memory per run, GB")
    s.add_argument("--slurm-gpus-per-task", type=int, default=1, help="GPUs per run (0: CPU runs)")
    s.add_argument("--slurm-cpus-per-task", type=int, default=8, help="CPUs per run")
    s.add_argument("--sbatch", nargs="*", default=[], metavar="KEY=VALUE",
                   help="further sbatch options, e.g. constraint=a100 exclude=node3")
    return p


def settings_from_args(args, extra: List[str]) -> SweepSettings:
    for cfg in [*args.base, *args.methods]:
        if not os.path.isfile(cfg):
            raise ValueError(f"config file '{cfg}' not found")
    if args.method_overrides is not None and not os.path.isdir(args.method_overrides):
        raise ValueError(f"--method-overrides '{args.method_overrides}' is not a folder")
    names = [os.path.splitext(os.path.basename(m))[0] for m in args.methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method config stems must be unique (they name the runs); got {names}")
    methods = {n: [m] for n, m in zip(names, args.methods)}
    if args.method_overrides:
        for n in names:
            override = os.path.join(args.method_overrides, f"{n}.yaml")
            if os.path.isfile(override):
                methods[n].append(override)
    depends = parse_dependencies({k: getattr(args, k) for k in DEPENDENCY_FLAGS}, names)
    return SweepSettings(base=list(args.base), methods=methods, seeds=list(args.seeds), out=args.out,
                         extra=list(extra), data_seed=not args.no_data_seed, depends=depends)


def finished_runs(settings: SweepSettings) -> Dict[str, Dict[int, str]]:
    out: Dict[str, Dict[int, str]] = {}
    for run in settings.runs():
        if is_finished(run.folder):
            out.setdefault(run.name, {})[run.seed] = run.folder
    return out


def summarize_sweep(settings: SweepSettings, seconds: Optional[Dict[str, float]] = None) -> str:
    """Write the summary of every finished run of ``settings`` (the wall times of earlier launches kept)."""
    from otcls.reporting.summary import summarize

    os.makedirs(settings.out, exist_ok=True)
    previous = os.path.join(settings.out, "summary.json")
    times: Dict[str, float] = {}
    if os.path.isfile(previous):
        with open(previous) as fh:
            times.update(json.load(fh).get("seconds_per_run", {}))
    times.update(seconds or {})
    return summarize(finished_runs(settings), settings.out, times)


def _dry_run(settings: SweepSettings, runs: List[Run], slots, args) -> None:
    from otcls.sweeps.plan import selected_checkpoint

    order = [r for r in runs if not r.parent_folder] + [r for r in runs if r.parent_folder]
    for i, run in enumerate(order):
        parent = None
        if run.parent_folder:
            parent = (selected_checkpoint(run.parent_folder) if is_finished(run.parent_folder)
                      else os.path.join(run.parent_folder, "checkpoints", "best-*.ckpt"))
        state = ("reuse" if is_finished(run.folder) else "resume" if last_checkpoint(run.folder) else "new")
        env = f"CUDA_VISIBLE_DEVICES={','.join(slots.groups[i % len(slots.groups)])} " if slots else ""
        cmd = settings.command(run, parent, resume=state == "resume")
        after = f" [after {run.parent_key}]" if run.parent_key else ""
        print(f"{run.key}: {env}{shlex.join(cmd)}{after}" + (" [finished: reused]" if state == "reuse" else ""))
    if args.slurm:
        from otcls.sweeps.slurm import dry_run_text

        print("\n".join(dry_run_text(settings, runs, _slurm_options(args))))
    at_once = "SLURM jobs" if args.slurm else f"{len(slots.groups) if slots else args.jobs} at a time"
    print(f"dry run: {len(runs)} runs, {at_once}; nothing was run")


def _slurm_options(args):
    from otcls.sweeps.slurm import SlurmOptions, parse_sbatch

    return SlurmOptions(cluster=args.slurm_cluster, partition=args.slurm_partition, account=args.slurm_account,
                        qos=args.slurm_qos, time_min=args.slurm_time, mem_gb=args.slurm_mem,
                        gpus_per_job=args.slurm_gpus_per_task, cpus_per_job=args.slurm_cpus_per_task,
                        sbatch=parse_sbatch(args.sbatch))


def main(argv: Optional[List[str]] = None) -> int:
    from otcls._extras import require
    from otcls.sweeps.local import DeviceSlots, SweepInterrupted, run_here

    require("plots")  # the summary's figures: refuse before any run starts rather than after all of them
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.runs_per_gpu != 1 and not args.gpus:
        raise ValueError("--runs-per-gpu needs --gpus (on the CPU, --jobs sets how many runs go at once)")
    slots = DeviceSlots(args.gpus, args.gpus_per_run, args.runs_per_gpu) if args.gpus else None
    if slots:
        extra = slots.trainer_args() + extra
    settings = settings_from_args(args, extra)
    runs = settings.runs()
    if args.summarize_only:
        print(summarize_sweep(settings))
        return 0
    opts = _slurm_options(args) if args.slurm else None  # options checked before anything runs
    if args.dry_run:
        _dry_run(settings, runs, slots, args)
        return 0
    if args.force:
        for run in runs:
            set_aside(run.folder)
    if opts is not None and opts.cluster == "slurm":
        from otcls.sweeps.slurm import submit

        jobs = submit(settings, runs, opts)
        print(f"otcls sweep: {len(jobs) - 1} run job(s) queued or running and the summary job {jobs['summary']}; "
              f"ids in {os.path.join(settings.out, 'slurm', 'jobs.json')}. Follow with squeue --me; the summary "
              f"lands in {os.path.join(settings.out, 'summary.md')} (or run this command again with --summarize-only).")
        return 0

    seconds: Dict[str, float] = {}
    failed: List[str] = []
    reused: List[str] = []
    start = time.time()

    def on_done(run: Run, rc: Optional[int], secs: float, state: str) -> bool:
        if rc is None:
            failed.append(f"{run.key} (not run: it starts from {run.parent_folder}, which failed)")
            return False
        if state == "reuse":
            reused.append(run.key)
        elif secs:
            seconds[run.key] = round(secs, 1)
        if rc != 0:
            failed.append(f"{run.key} (exit {rc}; output above or in {run.folder}/output.log)")
            return False
        return True

    if opts is not None:
        from otcls.sweeps.slurm import run_waves

        for key, rc in run_waves(settings, runs, opts).items():
            if rc != 0:
                failed.append(f"{key} (exit {rc})")
    else:
        from tqdm import tqdm

        with tqdm(total=len(runs), desc="sweep", unit="run") as bar:
            try:
                run_here(settings, runs, workers=len(slots.groups) if slots else args.jobs, slots=slots,
                         on_done=on_done, progress=bar)
            except SweepInterrupted as stop:
                print(f"otcls sweep: {stop}; every run was stopped. Run the same command again to resume the "
                      "unfinished runs from their last.ckpt.", file=sys.stderr)
                return 130
    print(summarize_sweep(settings, seconds))
    print(f"sweep: {len(runs) - len(failed)}/{len(runs)} runs in {time.time() - start:.0f} s; "
          f"summary in {os.path.join(args.out, 'summary.md')} and summary.json")
    if reused:
        print(f"reused {len(reused)} finished run(s) with test_results.json (--force reruns them): {', '.join(reused)}")
    if failed:
        print("failed runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
