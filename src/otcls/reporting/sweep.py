"""``otcls sweep``: run a grid of configs × seeds locally and write a mean ± std table.

    otcls sweep --base configs/base/fmnist.yaml --methods configs/fmnist_lt/ce.yaml configs/fmnist_lt/dbot.yaml \\
                --seeds 0 1 2 --out results/demo --jobs 2 -- --trainer.max_epochs 5

Every (method config, seed) is one ``otcls fit --test_after_fit true`` subprocess with run dir
``OUT/runs/<method>/seed<s>``; ``--jobs N`` runs N at a time (one by one by default). Arguments
after ``--`` are extra ``--key value`` overrides given to every run. Writes ``OUT/summary.json``
(``methods.<method>.seeds.<seed>.<test prior>.<inference mode>.<metric>`` and
``methods.<method>.aggregate.<test prior>.<inference mode>.<metric>.{mean,std,n}``) and ``OUT/summary.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Dict, List, Optional

from tqdm import tqdm

from otcls.reporting.results import aggregate, flat_test_metrics, nest, pm, split_key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otcls sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", nargs="*", default=[], help="config files given first to every run (shared settings)")
    p.add_argument("--methods", nargs="+", required=True, help="one config file per method (its stem names it)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (seed_everything and data.init_args.seed)")
    p.add_argument("--out", required=True, help="output folder (runs/ and summary.{json,md})")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    p.add_argument("--no-data-seed", action="store_true",
                   help="do not pass --data.init_args.seed (for DataModules without a seed argument)")
    return p


def run_command(base: List[str], method: str, seed: int, run_dir: str, extra: List[str], data_seed: bool) -> List[str]:
    cmd = [sys.executable, "-m", "otcls.cli", "fit"]
    for cfg in [*base, method]:
        cmd += ["--config", cfg]
    cmd += ["--seed_everything", str(seed), "--trainer.default_root_dir", run_dir, "--test_after_fit", "true"]
    if data_seed:
        cmd += ["--data.init_args.seed", str(seed)]
    return cmd + extra


def _run(cmd: List[str], run_dir: str, stream: bool) -> tuple:
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    if stream:
        rc = subprocess.call(cmd)
    else:
        with open(os.path.join(run_dir, "output.log"), "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    return rc, time.time() - start


def summarize(per_method: Dict[str, Dict[int, Dict[str, float]]], out: str, seconds: Dict[str, float]) -> str:
    """Write ``summary.json`` / ``summary.md``; return the Markdown."""
    agg = {m: aggregate({str(s): v for s, v in runs.items()}) for m, runs in per_method.items()}
    payload = {"methods": {m: {"seeds": {str(s): nest(v) for s, v in runs.items()}, "aggregate": nest(agg[m])}
                           for m, runs in per_method.items()},
               "seconds_per_run": seconds}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(payload, fh, indent=1)
    metrics = list(dict.fromkeys(split_key(k)[1] for runs in per_method.values() for run in runs.values() for k in run))
    lines = ["| method | " + "setting | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for m, a in agg.items():
        for r in dict.fromkeys(split_key(k)[0] for run in per_method[m].values() for k in run):
            cells = [pm(a[f"{r}/{c}"]["mean"], a[f"{r}/{c}"]["std"]) if f"{r}/{c}" in a else "—" for c in metrics]
            lines.append(f"| {m} | {r} | " + " | ".join(cells) + " |")
    n_seeds = max((len(r) for r in per_method.values()), default=0)
    md = f"# Sweep summary (mean ± std over {n_seeds} seed(s))\n\n" + "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(md)
    return md


def main(argv: Optional[List[str]] = None) -> int:
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
    names = [os.path.splitext(os.path.basename(m))[0] for m in args.methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method config stems must be unique (they name the runs); got {names}")
    grid = [(name, method, seed) for name, method in zip(names, args.methods) for seed in args.seeds]
    results: Dict[str, Dict[int, Dict[str, float]]] = {n: {} for n in names}
    seconds: Dict[str, float] = {}
    failed = []
    start = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool, tqdm(total=len(grid), desc="sweep", unit="run") as bar:
        futures = {}
        for name, method, seed in grid:
            run_dir = os.path.join(args.out, "runs", name, f"seed{seed}")
            cmd = run_command(args.base, method, seed, run_dir, extra, not args.no_data_seed)
            futures[pool.submit(_run, cmd, run_dir, args.jobs == 1)] = (name, seed, run_dir)
        for fut in as_completed(futures):
            name, seed, run_dir = futures[fut]
            rc, secs = fut.result()
            seconds[f"{name}/seed{seed}"] = round(secs, 1)
            if rc != 0:
                failed.append(f"{name}/seed{seed} (exit {rc}; output above or in {run_dir}/output.log)")
            else:
                results[name][seed] = flat_test_metrics(run_dir)
            bar.set_postfix_str(f"{name}/seed{seed} {secs:.0f}s")
            bar.update()
    os.makedirs(args.out, exist_ok=True)
    md = summarize({n: r for n, r in results.items() if r}, args.out, seconds)
    print(md)
    print(f"sweep: {len(grid) - len(failed)}/{len(grid)} runs in {time.time() - start:.0f} s; "
          f"summary in {os.path.join(args.out, 'summary.md')} and summary.json")
    if failed:
        print("failed runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
