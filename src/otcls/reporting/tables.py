"""Markdown tables with missing values shown as "—" (empty shot group, not 0 %), and the test-results files."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Iterable, List, Sequence


def fmt(value: object, digits: int = 2) -> str:
    """Numbers to ``digits`` decimals, NaN/None as "—", anything else as ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], digits: int = 2) -> str:
    lines: List[str] = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results_files(run_dir: str, payload: Dict[str, Any], results: Dict[str, Dict[str, Any]], title: str,
                       mode_header: str = "inference", stem: str = "test_results") -> str:
    """``<stem>.json`` (``payload`` + ``results``) and ``<stem>.md`` (one row per test prior × inference mode:
    top-1, many, medium, few, n) in ``run_dir``; returns the Markdown table."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, f"{stem}.json"), "w") as fh:
        json.dump({**payload, "results": results}, fh, indent=1, allow_nan=True)
    rows = [[variant, mode, r["top1"], r.get("many", float("nan")), r.get("medium", float("nan")),
             r.get("few", float("nan")), r["n"]]
            for variant, modes in results.items() for mode, r in modes.items() if "top1" in r]
    table = markdown_table(["test prior", mode_header, "top-1", "many", "medium", "few", "n"], rows)
    with open(os.path.join(run_dir, f"{stem}.md"), "w") as fh:
        fh.write(f"# {title}\n\n{table}")
    return table
