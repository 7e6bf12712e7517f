"""Headline and paired-difference tables on a fixture with a tie, a zero difference, a negative one, a seed only one
method has and a missing cell, against tables written out by hand."""
from __future__ import annotations

import math

from otcls.reporting.headline import headline_table, paired_table
from otcls.reporting.results import mean_std

KEY, LABEL = "balanced/softmax/top1", "balanced · softmax"


def run(value):
    return {"balanced": {"softmax": {"top1": value}}}


SUMMARY = {"methods": {
    "ce": {"seeds": {"0": run(50.0), "1": run(58.0), "2": run(72.0), "3": run(36.0), "5": run(10.0)}},
    # per seed against ce: 0 (a tie), +2, -2, +4; seed 4 has no ce run; reot's seed 5 lacks the cell
    "reot": {"seeds": {"0": run(50.0), "1": run(60.0), "2": run(70.0), "3": run(40.0), "4": run(99.0), "5": {}}},
}}


def test_paired_differences_by_hand():
    # diffs 0, 2, -2, 4 (seed 5: none, reot lacks the cell): mean 1, sample std sqrt((1 + 1 + 9 + 9) / 3) = 2.58; a tie is not a gain: 2 of 4 > 0
    assert paired_table(SUMMARY, "ce", [(KEY, LABEL)]) == (
        "| training loss − ce | balanced · softmax |\n"
        "|---|---|\n"
        "| reot | +1.00 ± 2.58 (2/4 > 0) |\n")


def test_headline_cells_by_hand():
    # ce: 50, 58, 72, 36, 10 -> mean 45.2, sample std sqrt((23.04 + 163.84 + 718.24 + 84.64 + 1239.04) / 4) = 23.605
    # reot: 50, 60, 70, 40, 99 (seed 5 has no value) -> mean 63.8, sample std 22.63
    assert headline_table(SUMMARY, [(KEY, LABEL)]) == (
        "| training loss | seeds | balanced · softmax |\n"
        "|---|---|---|\n"
        "| ce | 5 | 45.20 ± 23.61 |\n"
        "| reot | 6 | 63.80 ± 22.63 |\n")


def test_mean_std_ties_and_single_value():
    assert mean_std([3.0, 3.0]) == (3.0, 0.0)
    assert mean_std([2.0]) == (2.0, 0.0)
    m, s = mean_std([1.0, 1.0, 4.0, float("nan")])
    assert m == 2.0 and math.isclose(s, math.sqrt(3.0))
