"""Markdown tables with missing values shown as "—" (empty shot group, not 0 %)."""
from __future__ import annotations

import math
from typing import Iterable, List, Sequence


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
