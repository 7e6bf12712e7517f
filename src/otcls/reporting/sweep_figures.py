"""Plots of a sweep: per-class accuracy against training-class frequency, and accuracy against test-prior shift."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from otcls._extras import require

require("plots")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from otcls.reporting.headline import TEST_SETS, seed_value  # noqa: E402

SHIFT_SETTINGS = (("softmax", "softmax"), ("class_bias:known", "class bias (known)"),
                  ("reot:known", "RE-OT (known)"), ("dbot:known", "DB-OT (known)"),
                  ("dbot:estimated", "DB-OT (estimated)"), ("dbot:uniform", "DB-OT (uniform)"))


def plot_per_class_vs_frequency(full: Dict[str, Dict[int, Optional[dict]]], path: str, test_set: str = "balanced",
                                setting: str = "softmax") -> bool:
    """One line per method: per-class accuracy (mean over seeds) against the class's training images (log x)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = False
    for method, seeds in full.items():
        runs = [r for r in seeds.values() if r and r.get("class_counts") and setting in r["results"].get(test_set, {})]
        if not runs:
            continue
        counts = np.mean([r["class_counts"] for r in runs], axis=0)
        acc = np.nanmean([r["results"][test_set][setting]["per_class"] for r in runs], axis=0)
        order = np.argsort(-counts)
        ax.plot(counts[order], acc[order], marker="o", ms=3, label=f"{method} ({len(runs)} seeds)")
        drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.set_title("Per-class accuracy against class frequency", fontsize=9)
        _save(fig, ax, path, "training images of the class (log)", f"per-class accuracy (%), {test_set} test, {setting}")
    plt.close(fig)
    return drawn


def _save(fig, ax, path: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_prior_shift(summary: dict, path: str, settings: Sequence[tuple] = SHIFT_SETTINGS) -> bool:
    """One panel per training loss: top-1 on balanced → LT → reverse-LT test sets, one line per inference setting
    (mean ± std over seeds as error bars)."""
    methods = list(summary["methods"])
    if not methods:
        return False
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.6), sharey=True, squeeze=False)
    drawn = False
    x = np.arange(len(TEST_SETS))
    for ax, method in zip(axes[0], methods):
        seeds = summary["methods"][method]["seeds"]
        for key, label in settings:
            vals = np.array([[seed_value(r, f"{t}/{key}/top1") for t, _ in TEST_SETS] for r in seeds.values()])
            if vals.size == 0 or np.isnan(vals).all():
                continue
            ax.errorbar(x, np.nanmean(vals, 0), yerr=np.nanstd(vals, 0), marker="o", ms=3, capsize=2, label=label)
            drawn = True
        ax.set_xticks(x, [lab for _, lab in TEST_SETS])
        ax.set_title(method, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Accuracy under test-prior shift (balanced → LT → reverse-LT)", fontsize=9)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def validation_curves(run_dirs: Dict[str, Dict[int, str]], metric: str = "val/bal_acc") -> Dict[str, Dict[int, list]]:
    """``{method: {epoch: [value per seed]}}`` of ``metric`` from each run's CSV logs (the fit's last version)."""
    from otcls.reporting.results import read_metrics_csv

    curves: Dict[str, Dict[int, list]] = {}
    for method, seeds in run_dirs.items():
        for run_dir in seeds.values():
            per_epoch = {int(r["epoch"]): r[metric] for r in read_metrics_csv(run_dir) if metric in r and "epoch" in r}
            for epoch, value in per_epoch.items():
                curves.setdefault(method, {}).setdefault(epoch, []).append(value)
    return curves


def learning_curve_markdown(curves: Dict[str, Dict[int, list]], metric: str = "val/bal_acc") -> str:
    """Epoch × method table of ``metric`` (mean ± std over seeds)."""
    from otcls.reporting.results import mean_std, pm

    epochs = sorted({e for c in curves.values() for e in c})
    lines = ["| epoch | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for e in epochs:
        lines.append(f"| {e} | " + " | ".join(pm(*mean_std(c[e])) if e in c else "—" for c in curves.values()) + " |")
    return f"# Learning curves: {metric} (%) per epoch, mean ± std over seeds\n\n" + "\n".join(lines) + "\n"


def plot_learning_curves(curves: Dict[str, Dict[int, list]], path: str, metric: str = "val/bal_acc") -> bool:
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, c in curves.items():
        epochs = sorted(c)
        ax.errorbar(epochs, [np.mean(c[e]) for e in epochs], yerr=[np.std(c[e]) for e in epochs], marker="o", ms=3,
                    capsize=2, label=method)
    _save(fig, ax, path, "epoch (fine-tuning runs count from their own start)", f"{metric} (%)")
    plt.close(fig)
    return True
