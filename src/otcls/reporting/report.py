"""``otcls report RUN_DIR... [--out DIR]``: comparison table and plots from finished runs.

Writes ``report.md`` and ``report.json`` (run → metric key → value; for several seeds of one
method use ``otcls sweep``, which writes mean ± std) and PNGs: per-class accuracy against
training class frequency, λ(t) from the CSV logs, and one confusion matrix per run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

from otcls._extras import require

require("plots")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from otcls.reporting.results import (flat_test_metrics, load_test_results, read_metrics_csv, run_identity,  # noqa: E402
                                    split_key)
from otcls.reporting.tables import markdown_table  # noqa: E402


def run_label(run_dir: str) -> str:
    """The run's identity from its ``run.json`` (``ldam_drw-s0``; ``ldam_drw-s0-v1`` for a second folder of the same
    identity); without one, ``.../reot_ratio/seed0`` → ``reot_ratio/seed0``, ``.../ce`` → ``ce``."""
    identity = run_identity(run_dir)
    folder = os.path.basename(os.path.normpath(run_dir))
    if identity:
        return folder if folder.startswith(identity + "-v") else identity
    parts = os.path.normpath(run_dir).split(os.sep)
    return "/".join(parts[-2:]) if parts[-1].startswith("seed") and len(parts) > 1 else parts[-1]


def comparison_table(metrics: Dict[str, Dict[str, float]]) -> str:
    cols = list(dict.fromkeys(split_key(k)[1] for m in metrics.values() for k in m))
    rows = []
    for label, m in metrics.items():
        for setting in dict.fromkeys(split_key(k)[0] for k in m):
            rows.append([label, setting] + [m.get(f"{setting}/{c}", float("nan")) for c in cols])
    return markdown_table(["run", "setting", *cols], rows)


def plot_per_class(results: Dict[str, dict], path: str, variant: str = "balanced", mode: str = "softmax") -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for label, res in results.items():
        counts = res.get("class_counts")
        r = res["results"].get(variant, {}).get(mode)
        if counts is None or r is None:
            continue
        order = np.argsort(counts)[::-1]
        ax.plot(np.asarray(counts)[order], np.asarray(r["per_class"])[order], marker="o", ms=3, label=label)
        drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.set_xlabel("training images of the class")
        ax.set_ylabel(f"per-class accuracy (%), {variant} test, {mode}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def plot_lambda(run_dirs: List[str], path: str) -> bool:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    drawn = False
    for run_dir in run_dirs:
        pts = {int(r["epoch"]): r["train/lambda"] for r in read_metrics_csv(run_dir) if "train/lambda" in r and "epoch" in r}
        if pts:
            ep = sorted(pts)
            ax.plot(ep, [pts[e] for e in ep], marker=".", label=run_label(run_dir))
            drawn = True
    if drawn:
        ax.set_xlabel("epoch")
        ax.set_ylabel("λ(t)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def plot_confusion(res: dict, path: str, variant: str = "balanced", mode: str = "softmax") -> bool:
    r = res["results"].get(variant, {}).get(mode)
    if r is None:
        return False
    conf = np.asarray(r["confusion"], dtype=float)
    conf = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(conf, cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{res.get('loss', '')}: {variant} test, {mode}", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="otcls report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories (trainer.default_root_dir of finished runs)")
    p.add_argument("--out", default="results/report", help="output folder")
    p.add_argument("--variant", default="balanced", help="test prior of the per-class and confusion plots")
    p.add_argument("--mode", default="softmax", help="inference mode of the per-class and confusion plots")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    for run in args.runs:
        if not os.path.isdir(run):
            raise ValueError(f"run directory '{run}' does not exist")
    os.makedirs(args.out, exist_ok=True)
    labels = [run_label(r) for r in args.runs]
    if len(set(labels)) != len(labels):
        labels = [os.path.normpath(r).replace(os.sep, "/") for r in args.runs]
    metrics = {lab: flat_test_metrics(run) for lab, run in zip(labels, args.runs)}
    full = {lab: res for lab, run in zip(labels, args.runs) if (res := load_test_results(run)) is not None}
    figures = []
    if plot_per_class(full, os.path.join(args.out, "per_class_accuracy.png"), args.variant, args.mode):
        figures.append("per_class_accuracy.png")
    if plot_lambda(args.runs, os.path.join(args.out, "lambda.png")):
        figures.append("lambda.png")
    for lab, res in full.items():
        name = "confusion_" + lab.replace("/", "_") + ".png"
        if plot_confusion(res, os.path.join(args.out, name), args.variant, args.mode):
            figures.append(name)
    table = comparison_table(metrics)
    md = "# otcls report\n\n" + table + "\n" + "".join(f"![{f}]({f})\n" for f in figures)
    with open(os.path.join(args.out, "report.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(args.out, "report.json"), "w") as fh:
        json.dump({"runs": dict(zip(labels, args.runs)), "metrics": metrics, "figures": figures}, fh, indent=1)
    print(table)
    print(f"report: {os.path.join(args.out, 'report.md')}, report.json and {len(figures)} figure(s)")
    return 0
