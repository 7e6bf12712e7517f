"""Offline LVIS demo: train + evaluate Mask R-CNN with each box-classification loss, write the AP table.

For every loss this runs ``otcls fit --config configs/lvis/base/<base>.yaml --config
configs/lvis/<set>/<loss>.yaml`` (fit, then LVISEval on the val split; ``--jobs`` runs at a
time, each logging to ``<runs>/<loss>/run.log``), reads each run's
``test_results.json`` and writes ``<out>/ap_table.md`` (AP × 100 of the default box scoring; "—"
where a frequency group has no category), ``<out>/ap_by_inference.md`` (mask AP / APr of every
box-inference setting the config scores) and ``<out>/ap_by_frequency.png``. With the demo base config it generates the
demo set first if it is missing; ``--base lvis_v1 --set lvis_v1`` is the real LVIS recipe.

    OMP_NUM_THREADS=1 python experiments/lvis/run_demo.py --jobs 2   # every demo loss, 2 CPU cores
    python experiments/lvis/run_demo.py --losses ce reot_ratio --max-epochs 1
    python experiments/lvis/run_demo.py --retest   # re-score the runs' last checkpoints (new inference settings)

``--retest`` runs ``otcls test`` on each run's ``checkpoints/last.ckpt`` instead of training, and reads
the ``last.test_results.json`` it writes beside the checkpoint (the time column is then left empty).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

DEMO_LOSSES = ("ce", "focal", "ldam", "logit_adjust", "cb_ce", "cb_focal", "balanced_softmax", "reot_ratio", "dbot")
COLUMNS = ("segm/AP", "segm/AP50", "segm/AP75", "segm/APr", "segm/APc", "segm/APf", "bbox/AP", "bbox/APr",
           "bbox/APc", "bbox/APf")


def run_one(loss: str, args: argparse.Namespace) -> Tuple[str, Dict, float]:
    """``otcls fit`` (then test) for one method file in a subprocess; its output goes to ``<run>/run.log``."""
    root = os.path.join(args.runs, loss)
    os.makedirs(root, exist_ok=True)
    ckpt = os.path.join(root, "checkpoints", "last.ckpt")
    if args.retest and not os.path.isfile(ckpt):
        raise ValueError(f"--retest: run '{loss}' has no checkpoint {ckpt}; train it first (without --retest)")
    cmd = [sys.executable, "-m", "otcls.cli", "test" if args.retest else "fit",
           "--config", os.path.join(args.configs, "base", f"{args.base}.yaml"),
           "--config", os.path.join(args.configs, args.set, f"{loss}.yaml"),
           f"--trainer.default_root_dir={root}", f"--data.init_args.root={args.data_root}",
           "--trainer.enable_progress_bar=false"]
    if args.max_epochs is not None:
        cmd.append(f"--trainer.max_epochs={args.max_epochs}")
    if args.retest:
        cmd.append(f"--ckpt_path={ckpt}")
    t0 = time.time()
    log_name = "retest.log" if args.retest else "run.log"
    with open(os.path.join(root, log_name), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError(f"run '{loss}' failed (exit {code}); see {os.path.join(root, log_name)}")
    results = os.path.join(root, "checkpoints", "last.test_results.json") if args.retest else \
        os.path.join(root, "test_results.json")
    with open(results) as f:
        return loss, json.load(f), None if args.retest else time.time() - t0


def pct(v: float) -> Optional[float]:
    """AP × 100; None (shown "—") where LVISEval reports -1 (a frequency group without categories)."""
    return None if v < 0 else 100.0 * v


def inference_table(by_inference: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """Rows: loss; columns: mask AP and APr of each box-inference setting (same order for every loss)."""
    from otcls.reporting.tables import markdown_table

    settings = list(next(iter(by_inference.values())))
    header = ["loss"] + [f"{s} {m}" for s in settings for m in ("segm/AP", "segm/APr")]
    rows = [[loss] + [pct(res[s][m]) for s in settings for m in ("segm/AP", "segm/APr")]
            for loss, res in by_inference.items()]
    return markdown_table(header, rows, digits=1)


def write_outputs(results: Dict[str, Dict[str, float]], seconds: Dict[str, Optional[float]], out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from otcls.reporting.tables import markdown_table

    os.makedirs(out, exist_ok=True)
    rows = [[loss] + [pct(m[c]) for c in COLUMNS] + [seconds[loss]] for loss, m in results.items()]
    table = markdown_table(["loss", *COLUMNS, "time (s)"], rows, digits=1)
    with open(os.path.join(out, "ap_table.md"), "w") as f:
        f.write(table)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(results)), 3.5))
    x = np.arange(len(results))
    for k, group in enumerate(("APr", "APc", "APf")):
        vals = [pct(m[f"segm/{group}"]) or 0.0 for m in results.values()]
        ax.bar(x + (k - 1) * 0.27, vals, width=0.27, label=f"mask {group}")
    ax.set_xticks(x, list(results), rotation=30, ha="right")
    ax.set_ylabel("mask AP × 100")
    ax.set_title("Offline LVIS-format demo: mask AP by frequency group")
    ax.set_ylim(0, 1.25 * max([ax.get_ylim()[1], 1.0]))
    ax.legend(ncol=3, loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ap_by_frequency.png"), dpi=120)
    plt.close(fig)
    return table


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--losses", nargs="+", default=list(DEMO_LOSSES), help="method files of configs/lvis/<set>/")
    p.add_argument("--configs", default="configs/lvis")
    p.add_argument("--base", default="demo", help="configs/lvis/base/<base>.yaml")
    p.add_argument("--set", default="demo", help="folder of method files under configs/lvis/")
    p.add_argument("--data-root", default="data/lvis_demo")
    p.add_argument("--runs", default="runs/lvis_demo")
    p.add_argument("--out", default="results/lvis_demo")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (each a process; set OMP_NUM_THREADS)")
    p.add_argument("--retest", action="store_true", help="otcls test the runs' last checkpoints instead of training")
    args = p.parse_args(argv)
    missing = [loss for loss in args.losses if not os.path.isfile(os.path.join(args.configs, args.set, f"{loss}.yaml"))]
    if missing:
        raise ValueError(f"no method file for {missing} in {os.path.join(args.configs, args.set)}")
    if args.base == "demo" and not os.path.isfile(os.path.join(args.data_root, "annotations", "lvis_v1_train.json")):
        from otcls.data.lvis_synth import main as make_demo

        make_demo(["--out", args.data_root])
    done: Dict[str, Tuple[Dict, float]] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, loss, args) for loss in args.losses]
        with tqdm(total=len(futures), desc="lvis runs", unit="run") as bar:
            for fut in as_completed(futures):
                loss, saved, sec = fut.result()
                done[loss] = (saved, sec)
                bar.set_postfix_str(f"{loss}: mask AP {100 * saved['metrics']['segm/AP']:.1f}")
                bar.update()
    results = {loss: done[loss][0]["metrics"] for loss in args.losses}
    seconds = {loss: done[loss][1] for loss in args.losses}
    print(write_outputs(results, seconds, args.out))
    by_inference = inference_table({loss: done[loss][0]["by_inference"] for loss in args.losses})
    with open(os.path.join(args.out, "ap_by_inference.md"), "w") as f:
        f.write(by_inference)
    print(by_inference)
    print(f"wrote {os.path.join(args.out, 'ap_table.md')}, ap_by_inference.md and ap_by_frequency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
