"""Read finished runs and aggregate their test numbers (shared by ``otcls report`` and ``otcls sweep``).

A run directory holds ``test_results.json`` (written by :class:`otcls.tasks.ImageClassifier`) and/or
``logs/version_*/metrics.csv`` (any task). Numbers are flattened to ``"<row>/<metric>"`` keys, e.g.
``"balanced/reot/top1"`` or, from a CSV, ``"test/top1"``.
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
from typing import Dict, List, Optional

METRIC_KEYS = ("top1", "many", "medium", "few", "l1")


def read_metrics_csv(run_dir: str) -> List[Dict[str, float]]:
    """All rows of every ``logs/version_*/metrics.csv`` of the run, in version order (empty cells dropped)."""
    rows: List[Dict[str, float]] = []
    paths = sorted(glob.glob(os.path.join(run_dir, "logs", "version_*", "metrics.csv")),
                   key=lambda p: int(p.split("version_")[-1].split(os.sep)[0]))
    for path in paths:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def run_identity(run_dir: str) -> Optional[str]:
    """The run's identity (``<method>-s<seed>``) from the ``run.json`` that ``otcls fit`` writes; None without one."""
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fh:
            name = json.load(fh).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def load_test_results(run_dir: str) -> Optional[dict]:
    path = os.path.join(run_dir, "test_results.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fh:
            res = json.load(fh)
    except ValueError as err:  # json.JSONDecodeError; also a file cut short by an interrupted write
        raise ValueError(f"{path} is not valid JSON ({err}); the test that wrote it was interrupted: rerun "
                         f"'otcls test' on the run's checkpoint") from err
    if not isinstance(res, dict) or not isinstance(res.get("results"), dict):
        raise ValueError(f"{path} has no 'results' mapping (test set → inference setting → metrics); it was not "
                         "written by an otcls test run")
    return res


def flat_test_metrics(run_dir: str) -> Dict[str, float]:
    """``{"variant/mode/metric": value}`` from ``test_results.json``, else the ``test*`` keys of the CSV logs."""
    res = load_test_results(run_dir)
    if res is not None:
        return {f"{variant}/{mode}/{k}": float(r[k]) for variant, modes in res["results"].items()
                for mode, r in modes.items() for k in METRIC_KEYS if k in r}
    flat: Dict[str, float] = {}
    for row in read_metrics_csv(run_dir):
        flat.update({k: v for k, v in row.items() if k.startswith("test")})
    if not flat:
        raise ValueError(f"{run_dir}: no test_results.json and no 'test*' metrics in logs/version_*/metrics.csv; "
                         "run 'otcls test' (or fit with --test_after_fit true) first")
    return flat


def mean_std(values: List[float]) -> tuple:
    """Mean and sample standard deviation (0 for one value) over the non-NaN values; NaN if none."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def aggregate(per_run: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """``{key: {"mean", "std", "n"}}`` over runs (a key missing from a run counts as NaN there)."""
    keys = sorted({k for m in per_run.values() for k in m})
    out = {}
    for k in keys:
        vals = [m.get(k, float("nan")) for m in per_run.values()]
        mu, sd = mean_std(vals)
        out[k] = {"mean": mu, "std": sd, "n": sum(not math.isnan(v) for v in vals)}
    return out


def nest(flat: Dict[str, object]) -> dict:
    """``{"balanced/reot/top1": v}`` → ``{"balanced": {"reot": {"top1": v}}}``."""
    out: dict = {}
    for key, value in flat.items():
        *path, leaf = key.split("/")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def split_key(key: str) -> tuple:
    """``"balanced/reot/top1"`` → ``("balanced/reot", "top1")``."""
    head, _, metric = key.rpartition("/")
    return head, metric


def pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}"
