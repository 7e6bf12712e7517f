"""``otcls sweep``: run a grid of configs × seeds locally and write a mean ± std table.

    otcls sweep --base configs/base/fmnist.yaml --methods configs/fmnist_lt/ce.yaml configs/fmnist_lt/dbot.yaml \\
                --seeds 0 1 2 --out results/demo --jobs 2 -- --trainer.max_epochs 5

Every (method config, seed) is one ``otcls fit --test_after_fit true`` subprocess with run dir
``OUT/runs/<method>/seed<s>``; ``--jobs N`` runs N at a time (one by one by default);
``--gpus 0,1,2,3 [--gpus-per-run K]`` gives every run its own group of K GPUs through
``CUDA_VISIBLE_DEVICES`` (a run waits for a free group), ``--runs-per-gpu K`` lets K runs share each group;
``--dry-run`` prints the commands. Arguments
after ``--`` are extra ``--key value`` overrides given to every run. A run whose
``test_results.json`` exists is reused, not rerun (``--force`` reruns it). ``--finetune dbot=ce`` starts
each ``dbot`` run from the selected checkpoint of the ``ce`` run of the same seed, once that has
finished. Writes ``OUT/summary.json``
(``methods.<method>.seeds.<seed>.<test prior>.<inference setting>.<metric>`` and
``methods.<method>.aggregate.<test prior>.<inference setting>.<metric>.{mean,std,n}``),
``OUT/summary.md`` (the headline table with paired differences, :mod:`otcls.reporting.headline`),
``OUT/summary_full.md`` (every test set × inference setting), ``OUT/learning_curves.md`` (validation
accuracy per epoch) and plots: per-class accuracy against training-class frequency, accuracy against
test-prior shift, and the learning curves.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import queue
import shlex
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

from tqdm import tqdm

from otcls.reporting.headline import headline_markdown
from otcls.reporting.results import aggregate, flat_test_metrics, load_test_results, nest, pm, split_key


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
    p.add_argument("--slurm", action="store_true",
                   help="submit the runs as SLURM job arrays through submitit (then the fine-tuning runs)")
    p.add_argument("--slurm-cluster", default="slurm", help="slurm, or local / debug to run the arrays here")
    p.add_argument("--slurm-partition", default=None, help="SLURM partition")
    p.add_argument("--slurm-gpus-per-task", type=int, default=1, help="GPUs per run on SLURM (0: CPU runs)")
    p.add_argument("--slurm-cpus-per-task", type=int, default=8, help="CPUs per run on SLURM")
    p.add_argument("--slurm-time", type=int, default=24 * 60, help="time limit per run, minutes")
    p.add_argument("--dry-run", action="store_true",
                   help="print one line per run (its environment and full command) and run nothing")
    p.add_argument("--finetune", nargs="*", default=[], metavar="CHILD=PARENT",
                   help="start each CHILD run from the selected checkpoint of the PARENT run of the same seed "
                        "(e.g. dbot=ce: the DB-OT loss fine-tunes the softmax model)")
    p.add_argument("--force", action="store_true",
                   help="rerun every run; by default a run whose test_results.json exists is reused")
    p.add_argument("--no-data-seed", action="store_true",
                   help="do not pass --data.init_args.seed (for DataModules without a seed argument)")
    return p


def run_command(base: List[str], method: List[str], seed: int, run_dir: str, extra: List[str],
                data_seed: bool) -> List[str]:
    """``otcls fit`` of one run: the base configs, then the method's config files, then the overrides."""
    cmd = [sys.executable, "-m", "otcls.cli", "fit"]
    for cfg in [*base, *method]:
        cmd += ["--config", cfg]
    cmd += ["--seed_everything", str(seed), "--trainer.default_root_dir", run_dir, "--test_after_fit", "true"]
    if data_seed:
        cmd += ["--data.init_args.seed", str(seed)]
    return cmd + extra


class DeviceSlots:
    """GPU groups of ``per_run`` ids, each offered ``runs_per_gpu`` times: a slot is handed to one run at a
    time and a run waits until a slot is free, so every group runs up to ``runs_per_gpu`` runs at once (small
    models leave most of a GPU idle). Slots alternate over the groups (0, 1, 0, 1 for two GPUs and two runs
    each), so the first runs spread over every GPU."""

    def __init__(self, gpus: str, per_run: int, runs_per_gpu: int = 1) -> None:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not ids or per_run < 1 or len(ids) % per_run:
            raise ValueError(f"--gpus {gpus!r} must list GPU ids whose number is a multiple of --gpus-per-run "
                             f"({per_run}), e.g. --gpus 0,1,2,3 --gpus-per-run 2")
        if len(set(ids)) != len(ids):
            raise ValueError(f"--gpus {gpus!r} lists a GPU twice; use --runs-per-gpu to share a GPU between runs")
        if runs_per_gpu < 1:
            raise ValueError(f"--runs-per-gpu must be >= 1, got {runs_per_gpu}")
        self.per_run = per_run
        groups = [ids[i:i + per_run] for i in range(0, len(ids), per_run)]
        self.groups = [g for _ in range(runs_per_gpu) for g in groups]
        self._free: "queue.Queue[List[str]]" = queue.Queue()
        for group in self.groups:
            self._free.put(group)

    def trainer_args(self) -> List[str]:
        args = ["--trainer.accelerator", "gpu", "--trainer.devices", str(self.per_run)]
        return args + (["--trainer.strategy", "ddp"] if self.per_run > 1 else [])

    @contextmanager
    def acquire(self) -> Iterator[Dict[str, str]]:
        """The environment of a run holding the next free group (blocks until one is free)."""
        group = self._free.get()
        try:
            yield {"CUDA_VISIBLE_DEVICES": ",".join(group)}
        finally:
            self._free.put(group)


def _run(cmd: List[str], run_dir: str, stream: bool, slots: Optional[DeviceSlots] = None) -> tuple:
    os.makedirs(run_dir, exist_ok=True)
    if slots is None:
        return _call(cmd, run_dir, stream, dict(os.environ))
    with slots.acquire() as env:
        return _call(cmd, run_dir, stream, {**os.environ, **env})


def _call(cmd: List[str], run_dir: str, stream: bool, env: Dict[str, str]) -> tuple:
    start = time.time()
    if stream:
        rc = subprocess.call(cmd, env=env)
    else:
        with open(os.path.join(run_dir, "output.log"), "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return rc, time.time() - start


def dry_run_lines(jobs: List[tuple], slots: Optional[DeviceSlots]) -> List[str]:
    """``jobs``: ``(name, seed, cmd)`` in submission order; the i-th run is shown on slot i mod #slots
    (the assignment when every run takes the same time; at run time a run takes the next free slot)."""
    lines = []
    for i, (name, seed, cmd) in enumerate(jobs):
        env = f"CUDA_VISIBLE_DEVICES={','.join(slots.groups[i % len(slots.groups)])} " if slots else ""
        lines.append(f"{name}/seed{seed}: {env}{shlex.join(cmd)}")
    return lines


def selected_checkpoint(run_dir: str) -> str:
    """The checkpoint a finished run was tested with: its newest ``best-*.ckpt``, else ``last.ckpt``."""
    best = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "best-*.ckpt")), key=os.path.getmtime)
    path = best[-1] if best else os.path.join(run_dir, "checkpoints", "last.ckpt")
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint in {run_dir}/checkpoints: the run did not finish")
    return path


def parse_finetune(pairs: List[str], names: List[str]) -> Dict[str, str]:
    """``["dbot=ce"]`` → ``{"dbot": "ce"}``; both must be methods of the sweep."""
    out = {}
    for pair in pairs:
        child, sep, parent = pair.partition("=")
        if not sep or child not in names or parent not in names or child == parent:
            raise ValueError(f"--finetune takes CHILD=PARENT with two different method names of this sweep "
                             f"({', '.join(names)}); got '{pair}'")
        out[child] = parent
    if set(out) & set(out.values()):
        raise ValueError(f"--finetune chains are not supported (a parent is itself fine-tuned): {pairs}")
    return out


def summarize(per_method: Dict[str, Dict[int, Dict[str, float]]], out: str, seconds: Dict[str, float],
              run_dirs: Optional[Dict[str, Dict[int, str]]] = None) -> str:
    """Write ``summary.json``, ``summary.md`` (headline), ``summary_full.md`` and the plots; return the headline."""
    from otcls.reporting.sweep_figures import (learning_curve_markdown, plot_learning_curves,
                                               plot_per_class_vs_frequency, plot_prior_shift, validation_curves)

    agg = {m: aggregate({str(s): v for s, v in runs.items()}) for m, runs in per_method.items()}
    payload = {"methods": {m: {"seeds": {str(s): nest(v) for s, v in runs.items()}, "aggregate": nest(agg[m])}
                           for m, runs in per_method.items()},
               "seconds_per_run": seconds}
    full = {m: {s: load_test_results(d) for s, d in seeds.items()} for m, seeds in (run_dirs or {}).items()}
    inference = next((r.get("inference") for runs in full.values() for r in runs.values() if r and r.get("inference")),
                     None)
    if inference:
        payload["inference"] = inference
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(payload, fh, indent=1)
    metrics = list(dict.fromkeys(split_key(k)[1] for runs in per_method.values() for run in runs.values() for k in run))
    lines = ["| method | " + "setting | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for m, a in agg.items():
        for r in dict.fromkeys(split_key(k)[0] for run in per_method[m].values() for k in run):
            cells = [pm(a[f"{r}/{c}"]["mean"], a[f"{r}/{c}"]["std"]) if f"{r}/{c}" in a else "—" for c in metrics]
            lines.append(f"| {m} | {r} | " + " | ".join(cells) + " |")
    n_seeds = max((len(r) for r in per_method.values()), default=0)
    full_md = (f"# Sweep summary: every test set × inference setting (mean ± std over {n_seeds} seed(s))\n\n"
               + "\n".join(lines) + "\n")
    with open(os.path.join(out, "summary_full.md"), "w") as fh:
        fh.write(full_md)
    figures = []
    if full and plot_per_class_vs_frequency(full, os.path.join(out, "per_class_vs_frequency.png")):
        figures.append("per_class_vs_frequency.png")
    if plot_prior_shift(payload, os.path.join(out, "prior_shift.png")):
        figures.append("prior_shift.png")
    curves = validation_curves(run_dirs or {})
    if curves:
        with open(os.path.join(out, "learning_curves.md"), "w") as fh:
            fh.write(learning_curve_markdown(curves))
        if plot_learning_curves(curves, os.path.join(out, "learning_curves.png")):
            figures.append("learning_curves.png")
    batch = (inference or {}).get("ot_batch_size")
    note = (f"OT inference couples each random test batch of {batch} images separately (the DB-OT paper's "
            "setting); whole-test-set couplings, every other inference setting and many/medium/few accuracies "
            "are in summary_full.md." if batch else "Every other setting is in summary_full.md.")
    headline = headline_markdown(payload, note=note)
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(headline + "".join(f"\n![{f}]({f})\n" for f in figures))
    return headline


def run_locally(args, grid, finetune, slots, finished, command, run_dir_of, record, skip_children, reused) -> None:
    """Run the grid here: ``--jobs`` processes, or one per free GPU slot."""
    workers = len(slots.groups) if slots else args.jobs
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(grid), desc="sweep", unit="run") as bar:
        futures = {}

        def submit(name: str, seed: int) -> None:
            if finished(name, seed):
                futures[pool.submit(lambda: (0, 0.0))] = (name, seed)  # reuse its results (--force reruns)
                reused.append(f"{name}/seed{seed}")
                return
            parent = selected_checkpoint(run_dir_of(finetune[name], seed)) if name in finetune else None
            futures[pool.submit(_run, command(name, seed, parent), run_dir_of(name, seed), workers == 1,
                                slots)] = (name, seed)

        # Runs are handed out only when a worker is free, and a fine-tuning run goes first once its parent
        # is done, so the sweep keeps its seed-major order (an interrupted sweep has compared every method).
        pending = deque((n, s) for n, s in grid if n not in finetune)
        while pending or futures:
            while pending and len(futures) < workers:
                submit(*pending.popleft())
            fut = next(as_completed(futures))
            name, seed = futures.pop(fut)
            rc, secs = fut.result()
            children = [c for c, p in finetune.items() if p == name]
            if record(name, seed, rc, secs):
                pending.extendleft((c, seed) for c in children)
            else:
                skip_children(name, seed)
                bar.update(len(children))
            bar.set_postfix_str(f"{name}/seed{seed} {secs:.0f}s")
            bar.update()


def main(argv: Optional[List[str]] = None) -> int:
    from otcls._extras import require

    require("plots")  # the summary's figures: refuse before any run starts rather than after all of them
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    for cfg in [*args.base, *args.methods]:
        if not os.path.isfile(cfg):
            raise ValueError(f"config file '{cfg}' not found")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.runs_per_gpu != 1 and not args.gpus:
        raise ValueError("--runs-per-gpu needs --gpus (on the CPU, --jobs sets how many runs go at once)")
    if args.method_overrides is not None and not os.path.isdir(args.method_overrides):
        raise ValueError(f"--method-overrides '{args.method_overrides}' is not a folder")
    slots = DeviceSlots(args.gpus, args.gpus_per_run, args.runs_per_gpu) if args.gpus else None
    if slots:
        extra = slots.trainer_args() + extra
    names = [os.path.splitext(os.path.basename(m))[0] for m in args.methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method config stems must be unique (they name the runs); got {names}")
    finetune = parse_finetune(args.finetune, names)
    configs = {n: [m] for n, m in zip(names, args.methods)}
    if args.method_overrides:
        for n in names:
            override = os.path.join(args.method_overrides, f"{n}.yaml")
            if os.path.isfile(override):
                configs[n].append(override)
    # Seed-major order: an interrupted sweep has compared every method on the first seeds.
    grid = [(name, seed) for seed in args.seeds for name in names]
    results: Dict[str, Dict[int, Dict[str, float]]] = {n: {} for n in names}
    run_dirs: Dict[str, Dict[int, str]] = {n: {} for n in names}
    seconds: Dict[str, float] = {}
    previous = os.path.join(args.out, "summary.json")
    if os.path.isfile(previous) and not args.force:  # keep the wall times of runs that are reused
        with open(previous) as fh:
            seconds.update(json.load(fh).get("seconds_per_run", {}))
    failed, reused = [], []
    start = time.time()

    def run_dir_of(name: str, seed: int) -> str:
        return os.path.join(args.out, "runs", name, f"seed{seed}")

    def command(name: str, seed: int, parent_checkpoint: Optional[str]) -> List[str]:
        more = list(extra)
        if parent_checkpoint:
            more += ["--model.init_args.init_checkpoint", parent_checkpoint]
        return run_command(args.base, configs[name], seed, run_dir_of(name, seed), more, not args.no_data_seed)

    if args.dry_run:
        order = [(n, s) for n, s in grid if n not in finetune] + [(n, s) for n, s in grid if n in finetune]
        jobs = [(n, s, command(n, s, os.path.join(run_dir_of(finetune[n], s), "checkpoints", "best-*.ckpt")
                               if n in finetune else None)) for n, s in order]
        print("\n".join(dry_run_lines(jobs, slots)))
        print(f"dry run: {len(jobs)} runs, {len(slots.groups) if slots else args.jobs} at a time; nothing was run")
        return 0

    def finished(name: str, seed: int) -> bool:
        return not args.force and os.path.isfile(os.path.join(run_dir_of(name, seed), "test_results.json"))

    def record(name: str, seed: int, rc: int, secs: float) -> bool:
        """Book one finished run; True when it succeeded."""
        if secs:
            seconds[f"{name}/seed{seed}"] = round(secs, 1)
        run_dir = run_dir_of(name, seed)
        if rc != 0:
            failed.append(f"{name}/seed{seed} (exit {rc}; output above or in {run_dir}/output.log)")
            return False
        results[name][seed] = flat_test_metrics(run_dir)
        run_dirs[name][seed] = run_dir
        return True

    def skip_children(name: str, seed: int) -> None:
        for child in (c for c, p in finetune.items() if p == name):
            failed.append(f"{child}/seed{seed} (not run: it fine-tunes {name}/seed{seed}, which failed)")

    if args.slurm:
        from otcls.reporting import slurm

        os.makedirs(args.out, exist_ok=True)
        executor = slurm.make_executor(os.path.join(args.out, "slurm"), args.slurm_cluster,
                                       partition=args.slurm_partition, gpus_per_task=args.slurm_gpus_per_task,
                                       cpus_per_task=args.slurm_cpus_per_task, timeout_min=args.slurm_time)
        ok = set()
        for wave in ([g for g in grid if g[0] not in finetune], [g for g in grid if g[0] in finetune]):
            wave = [(n, s) for n, s in wave if n not in finetune or (finetune[n], s) in ok]
            for n, s in (g for g in wave if finished(*g)):
                reused.append(f"{n}/seed{s}")
                if record(n, s, 0, 0.0):
                    ok.add((n, s))
            todo = [(f"{n}/seed{s}", command(n, s, selected_checkpoint(run_dir_of(finetune[n], s))
                                             if n in finetune else None), run_dir_of(n, s))
                    for n, s in wave if not finished(n, s)]
            print(f"otcls sweep: submitting {len(todo)} run(s) as one job array ({args.slurm_cluster})")
            for key, (rc, secs) in slurm.run_array(executor, todo).items():
                n, s = key.rsplit("/seed", 1)
                if record(n, int(s), rc, secs):
                    ok.add((n, int(s)))
                else:
                    skip_children(n, int(s))
    else:
        run_locally(args, grid, finetune, slots, finished, command, run_dir_of, record, skip_children, reused)
    os.makedirs(args.out, exist_ok=True)
    md = summarize({n: r for n, r in results.items() if r}, args.out, seconds,
                   {n: d for n, d in run_dirs.items() if d})
    print(md)
    print(f"sweep: {len(grid) - len(failed)}/{len(grid)} runs in {time.time() - start:.0f} s; "
          f"summary in {os.path.join(args.out, 'summary.md')} and summary.json")
    if reused:
        print(f"reused {len(reused)} finished run(s) with test_results.json (--force reruns them): {', '.join(reused)}")
    if failed:
        print("failed runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
