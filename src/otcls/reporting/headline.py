"""Headline tables of a sweep: accuracy mean ± std over seeds, then paired differences against baselines.

Input is the ``summary.json`` payload of :mod:`otcls.reporting.summary`:
``methods.<method>.seeds.<seed>.<test set>.<inference setting>.<metric>``. A cell a run does not
have is shown as "—". Paired differences compare a method with a baseline seed by seed (the same
seed means the same training subset and the same test batches), over the seeds both have.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

from otcls.reporting.results import mean_std, pm

TEST_SETS: Tuple[Tuple[str, str], ...] = (("balanced", "balanced"), ("lt", "LT"), ("reverse_lt", "reverse-LT"))
HEADLINE_SETTINGS: Tuple[Tuple[str, str], ...] = (("softmax", "softmax"), ("dbot:known", "DB-OT known"),
                                                  ("dbot:estimated", "DB-OT est."))
BASELINES = ("ce", "balanced_softmax")


def headline_columns(test_sets=TEST_SETS, settings=HEADLINE_SETTINGS) -> List[Tuple[str, str]]:
    """``(key, label)`` per column: key ``"<test set>/<setting>/top1"``, label ``"<test set> · <setting>"``."""
    return [(f"{t}/{s}/top1", f"{tl} · {sl}") for t, tl in test_sets for s, sl in settings]


def seed_value(seed_result: dict, key: str) -> float:
    """``seed_result[a][b][c]`` for ``key = "a/b/c"``; NaN when any part is missing."""
    node = seed_result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return float("nan")
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else float("nan")


def _seeds(summary: dict, method: str) -> Dict[str, dict]:
    return summary["methods"].get(method, {}).get("seeds", {})


def headline_table(summary: dict, columns: Optional[Sequence[Tuple[str, str]]] = None) -> str:
    """Rows = training loss, columns = test set × inference setting, cells mean ± std over seeds."""
    columns = list(columns or headline_columns())
    lines = ["| training loss | seeds | " + " | ".join(label for _, label in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for method in summary["methods"]:
        seeds = _seeds(summary, method)
        cells = [pm(*mean_std([seed_value(r, key) for r in seeds.values()])) for key, _ in columns]
        lines.append(f"| {method} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_difference(summary: dict, method: str, baseline: str, key: str) -> Tuple[float, float, int, int]:
    """``(mean, std, positive, n)`` of ``method - baseline`` over the seeds where both have ``key``."""
    mine, theirs = _seeds(summary, method), _seeds(summary, baseline)
    diffs = [seed_value(mine[s], key) - seed_value(theirs[s], key) for s in mine if s in theirs]
    diffs = [d for d in diffs if not math.isnan(d)]
    mean, std = mean_std(diffs)
    return mean, std, sum(d > 0 for d in diffs), len(diffs)


def format_difference(mean: float, std: float, positive: int, n: int) -> str:
    """``+1.23 ± 0.45 (3/3 > 0)``; "—" without a common seed."""
    if n == 0 or math.isnan(mean):
        return "—"
    return f"{mean:+.2f} ± {std:.2f} ({positive}/{n} > 0)"


def paired_table(summary: dict, baseline: str, columns: Optional[Sequence[Tuple[str, str]]] = None) -> str:
    """One row per other method: per-seed ``method - baseline`` of every headline column."""
    columns = list(columns or headline_columns())
    lines = [f"| training loss − {baseline} | " + " | ".join(label for _, label in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method in summary["methods"]:
        if method == baseline:
            continue
        cells = [format_difference(*paired_difference(summary, method, baseline, key)) for key, _ in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headline_markdown(summary: dict, baselines: Sequence[str] = BASELINES, note: str = "") -> str:
    """The headline table, then one paired-difference table per baseline present in the sweep."""
    n_seeds = max((len(_seeds(summary, m)) for m in summary["methods"]), default=0)
    parts = [f"# Headline: top-1 accuracy (%), mean ± std over {n_seeds} seed(s)\n",
             "Columns: test set · inference. *softmax*: argmax of the logits; *DB-OT known*: DB-OT inference "
             "with the test set's true class distribution (an oracle); *DB-OT est.*: with the prior estimated "
             "by EM from the unlabelled test logits (deployable).", note, "", headline_table(summary)]
    for baseline in baselines:
        if baseline in summary["methods"] and len(summary["methods"]) > 1:
            parts += [f"\n## Paired differences against {baseline} (same seed; mean ± std, seeds with a gain)\n",
                      paired_table(summary, baseline)]
    return "\n".join(p for p in parts if p is not None) + "\n"
