"""Headline table builder on hand-made summary JSON: means, paired differences by seed, missing cells."""
from __future__ import annotations

import pytest

from otcls.reporting.headline import (headline_columns, headline_markdown, headline_table, paired_difference,
                                      paired_table)


def _seed(bal_softmax, bal_dbot=None, rev_softmax=None):
    out = {"balanced": {"softmax": {"top1": bal_softmax}}}
    if bal_dbot is not None:
        out["balanced"]["dbot:known"] = {"top1": bal_dbot}
    if rev_softmax is not None:
        out["reverse_lt"] = {"softmax": {"top1": rev_softmax}}
    return out


SUMMARY = {"methods": {
    "ce": {"seeds": {"0": _seed(80.0, 85.0, 60.0), "1": _seed(82.0, 86.0, 62.0), "2": _seed(84.0, 87.0)}},
    "balanced_softmax": {"seeds": {"0": _seed(86.0, 87.0, 70.0), "1": _seed(85.0, 88.0, 71.0)}},
    "reot_ratio": {"seeds": {"1": _seed(83.0), "2": _seed(83.0)}},
}}


def test_paired_difference_uses_common_seeds_only():
    # balanced_softmax - ce on seeds 0 and 1: +6, +3 → mean 4.5, sample std 2.1213
    mean, std, positive, n = paired_difference(SUMMARY, "balanced_softmax", "ce", "balanced/softmax/top1")
    assert (mean, positive, n) == (pytest.approx(4.5), 2, 2)
    assert std == pytest.approx(2.1213203, rel=1e-6)
    # reot_ratio - ce on seeds 1 and 2: +1, -1
    mean, std, positive, n = paired_difference(SUMMARY, "reot_ratio", "ce", "balanced/softmax/top1")
    assert (mean, positive, n) == (pytest.approx(0.0), 1, 2)
    # a column reot_ratio never has: no common value
    assert paired_difference(SUMMARY, "reot_ratio", "ce", "balanced/dbot:known/top1")[3] == 0


def test_headline_table_cells_and_missing_values():
    table = headline_table(SUMMARY)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    cols = [label for _, label in headline_columns()]
    ce = dict(zip(["loss", "seeds", *cols], rows["ce"]))
    assert ce["seeds"] == "3"
    assert ce["balanced · softmax"] == "82.00 ± 2.00"
    assert ce["reverse-LT · softmax"] == "61.00 ± 1.41"  # seed 2 has no reverse-LT number: mean over two
    reot = dict(zip(["loss", "seeds", *cols], rows["reot_ratio"]))
    assert reot["balanced · DB-OT known"] == "—" and reot["LT · softmax"] == "—"


def test_paired_table_and_markdown():
    table = paired_table(SUMMARY, "ce")
    assert "| balanced_softmax | +4.50 ± 2.12 (2/2 > 0)" in table
    assert "| reot_ratio | +0.00 ± 1.41 (1/2 > 0) | —" in table
    assert "| ce |" not in table
    md = headline_markdown(SUMMARY)
    assert md.index("# Headline") < md.index("against ce") < md.index("against balanced_softmax")
    assert "mean ± std over 3 seed(s)" in md
