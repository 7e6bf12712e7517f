"""Molecule ROC-AUC table in the layout of the RE-OT paper's Table 2 (mean ± std over seeds).

For every base config (one column: a dataset) × loss config (one row) × seed, runs
``otcls fit --config BASE --config LOSS --seed_everything SEED`` (test at the best-validation
checkpoint) into ``<runs>/<base>/<loss>/seed<SEED>``, skipping runs that already have
``mol_test_results.json``. Then writes ``<out>/table2.md``, ``<out>/table2.png`` and
``<out>/headline.md`` (paired differences against CE and Balanced Softmax, OT inference columns).

    python experiments/mol/table2.py --base configs/mol/base/solubility_binary.yaml --seeds 0 1 2 3 4
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Dict, List

from tqdm import tqdm

# row order and names of the paper's Table 2, then DB-OT
LOSS_ROWS = {"ce": "Vanilla", "focal": "Focal Loss", "ldam": "LDAM", "logit_adjust": "LogitAdjust",
             "cb_ce": "CB-CE", "cb_focal": "CB-FC", "balanced_softmax": "Balanced Softmax",
             "reot": "RE-OT (ratio-based)", "dbot": "DB-OT"}


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def run_one(base: str, loss_cfg: str, seed: int, run_dir: str, extra: List[str]) -> None:
    from otcls.lightning_cli import run

    run(["fit", "--config", base, "--config", loss_cfg, "--seed_everything", str(seed),
         "--trainer.default_root_dir", run_dir, "--trainer.enable_progress_bar", "false", *extra])
    if not os.path.isfile(os.path.join(run_dir, "mol_test_results.json")):
        raise RuntimeError(f"{run_dir}: the run finished without mol_test_results.json (is test_after_fit on?)")


def collect(run_root: str) -> Dict[str, List[float]]:
    """``{mode: [test ROC-AUC per seed]}`` from ``<run_root>/seed*/mol_test_results.json``."""
    out: Dict[str, List[float]] = {}
    for path in sorted(glob.glob(os.path.join(run_root, "seed*", "mol_test_results.json"))):
        with open(path) as fh:
            for mode, r in json.load(fh)["results"].items():
                out.setdefault(mode, []).append(100.0 * r["rocauc"])
    return out


# headline columns: (key into a seed's results, label); ROC-AUC does not depend on the test prior for a
# binary task (OT inference shifts every logit difference by one constant), balanced accuracy does
HEADLINE_COLUMNS = [("softmax/rocauc", "ROC-AUC"), ("softmax/bal_acc", "bal. acc softmax"),
                    ("dbot:known/bal_acc", "bal. acc DB-OT known"), ("dbot:estimated/bal_acc", "bal. acc DB-OT est."),
                    ("reot:known/bal_acc", "bal. acc RE-OT known"), ("class_bias:known/bal_acc", "bal. acc class-bias known")]


def summary(run_root: str, losses: List[str]) -> dict:
    """``{"methods": {loss: {"seeds": {seed: {mode: {metric: %}}}}}}`` for :mod:`otcls.reporting.headline`."""
    methods = {}
    for l in losses:
        seeds = {}
        for path in sorted(glob.glob(os.path.join(run_root, stem(l), "seed*", "mol_test_results.json"))):
            with open(path) as fh:
                res = json.load(fh)["results"]
            seeds[os.path.basename(os.path.dirname(path))] = {
                mode: {k: 100.0 * r[k] for k in ("rocauc", "acc", "bal_acc")} for mode, r in res.items()}
        methods[stem(l)] = {"seeds": seeds}
    return {"methods": methods}


def write_headline(bases: List[str], losses: List[str], runs: str, out: str) -> str:
    """``<out>/headline.md``: per base, mean ± std over seeds and paired differences against CE and
    Balanced Softmax (same seed), test ROC-AUC and balanced accuracy with OT inference."""
    from otcls.reporting.headline import headline_table, paired_table

    parts = []
    for b in bases:
        s = summary(os.path.join(runs, stem(b)), losses)
        parts += [f"## {stem(b)}\n", headline_table(s, HEADLINE_COLUMNS)]
        for baseline in ("ce", "balanced_softmax"):
            if s["methods"].get(baseline, {}).get("seeds"):
                parts += [f"\nPaired differences against {baseline} (same seed; mean ± std, seeds with a gain):\n",
                          paired_table(s, baseline, HEADLINE_COLUMNS)]
    text = "\n".join(parts)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "headline.md"), "w") as fh:
        fh.write("# Molecule headline: test ROC-AUC and balanced accuracy (%), mean ± std over seeds\n\n" + text)
    return text


def write_table(bases: List[str], losses: List[str], runs: str, out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from otcls.reporting.results import mean_std, pm
    from otcls.reporting.tables import markdown_table

    stats = {(b, l): mean_std(collect(os.path.join(runs, stem(b), stem(l))).get("softmax", []))
             for b in bases for l in losses}
    counts = {(b, l): len(collect(os.path.join(runs, stem(b), stem(l))).get("softmax", [])) for b in bases for l in losses}
    rows = [[LOSS_ROWS.get(stem(l), stem(l))] + [f"{pm(*stats[b, l])} (n={counts[b, l]})" for b in bases]
            for l in losses]
    table = markdown_table(["Method"] + [f"{stem(b)} ROC-AUC" for b in bases], rows)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table2.md"), "w") as fh:
        fh.write("# Molecule classification, test ROC-AUC (%) at the best-validation epoch, mean ± std over seeds\n\n")
        fh.write(table)
    fig, axes = plt.subplots(1, len(bases), figsize=(4.5 * len(bases), 3.6), squeeze=False)
    for ax, b in zip(axes[0], bases):
        means = [stats[b, l][0] for l in losses]
        stds = [stats[b, l][1] for l in losses]
        ax.bar(range(len(losses)), means, yerr=stds, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(losses)), [LOSS_ROWS.get(stem(l), stem(l)) for l in losses], rotation=60, ha="right")
        finite = [m for m in means if m == m]
        if finite:
            ax.set_ylim(min(finite) - 8, min(100, max(finite) + 5))
        ax.set_ylabel("test ROC-AUC (%)")
        ax.set_title(stem(b))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "table2.png"), dpi=130)
    plt.close(fig)
    return table


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", nargs="+", required=True, help="base configs (one table column each)")
    p.add_argument("--losses", nargs="+", default=[f"configs/mol/losses/{n}.yaml" for n in LOSS_ROWS])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--runs", default="runs/mol", help="run directories go to RUNS/<base>/<loss>/seed<k>")
    p.add_argument("--out", default="results/mol")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from finished runs")
    args, extra = p.parse_known_args(argv)  # anything else goes to otcls fit, e.g. --trainer.max_epochs 5
    for path in args.base + args.losses:
        if not os.path.isfile(path):
            raise ValueError(f"config '{path}' does not exist")
    if not args.table_only:
        todo = [(b, l, s) for b in args.base for l in args.losses for s in args.seeds
                if not os.path.isfile(os.path.join(args.runs, stem(b), stem(l), f"seed{s}", "mol_test_results.json"))]
        for b, l, s in tqdm(todo, desc="molecule runs", file=sys.stdout):
            run_one(b, l, s, os.path.join(args.runs, stem(b), stem(l), f"seed{s}"), extra)
    print(write_table(args.base, args.losses, args.runs, args.out))
    print(write_headline(args.base, args.losses, args.runs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
