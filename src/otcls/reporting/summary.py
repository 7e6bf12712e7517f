"""A sweep's summary, from its finished runs' ``test_results.json``.

``OUT/summary.json`` (``methods.<method>.seeds.<seed>.<test prior>.<inference setting>.<metric>`` and
``methods.<method>.aggregate.<test prior>.<inference setting>.<metric>.{mean,std,n}``), ``OUT/summary.md`` (the
headline table with paired differences, :mod:`otcls.reporting.headline`), ``OUT/summary_full.md`` (every test
set × inference setting), ``OUT/learning_curves.md`` (validation accuracy per epoch) and plots: per-class
accuracy against training-class frequency, accuracy against test-prior shift, and the learning curves.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

from otcls.reporting.headline import headline_markdown
from otcls.reporting.results import aggregate, flat_test_metrics, load_test_results, nest, pm, split_key


def summarize(run_dirs: Dict[str, Dict[int, str]], out: str, seconds: Optional[Dict[str, float]] = None) -> str:
    """Write ``summary.json``, ``summary.md`` (headline), ``summary_full.md`` and the plots of the finished runs
    ``run_dirs`` (``{method: {seed: run folder}}``); return the headline."""
    from otcls.reporting.sweep_figures import (learning_curve_markdown, plot_learning_curves,
                                               plot_per_class_vs_frequency, plot_prior_shift, validation_curves)

    per_method = {m: {s: flat_test_metrics(d) for s, d in seeds.items()} for m, seeds in run_dirs.items() if seeds}
    seconds = seconds or {}
    agg = {m: aggregate({str(s): v for s, v in runs.items()}) for m, runs in per_method.items()}
    payload = {"methods": {m: {"seeds": {str(s): nest(v) for s, v in runs.items()}, "aggregate": nest(agg[m])}
                           for m, runs in per_method.items()},
               "seconds_per_run": seconds}
    full = {m: {s: load_test_results(d) for s, d in seeds.items()} for m, seeds in (run_dirs or {}).items()}
    inference = next((r.get("inference") for runs in full.values() for r in runs.values() if r and r.get("inference")),
                     None)
    if inference:
        payload["inference"] = inference
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(payload, fh, indent=1)
    metrics = list(dict.fromkeys(split_key(k)[1] for runs in per_method.values() for run in runs.values() for k in run))
    lines = ["| method | " + "setting | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for m, a in agg.items():
        for r in dict.fromkeys(split_key(k)[0] for run in per_method[m].values() for k in run):
            cells = [pm(a[f"{r}/{c}"]["mean"], a[f"{r}/{c}"]["std"]) if f"{r}/{c}" in a else "—" for c in metrics]
            lines.append(f"| {m} | {r} | " + " | ".join(cells) + " |")
    n_seeds = max((len(r) for r in per_method.values()), default=0)
    full_md = (f"# Sweep summary: every test set × inference setting (mean ± std over {n_seeds} seed(s))\n\n"
               + "\n".join(lines) + "\n")
    with open(os.path.join(out, "summary_full.md"), "w") as fh:
        fh.write(full_md)
    figures = []
    if full and plot_per_class_vs_frequency(full, os.path.join(out, "per_class_vs_frequency.png")):
        figures.append("per_class_vs_frequency.png")
    if plot_prior_shift(payload, os.path.join(out, "prior_shift.png")):
        figures.append("prior_shift.png")
    curves = validation_curves(run_dirs or {})
    if curves:
        with open(os.path.join(out, "learning_curves.md"), "w") as fh:
            fh.write(learning_curve_markdown(curves))
        if plot_learning_curves(curves, os.path.join(out, "learning_curves.png")):
            figures.append("learning_curves.png")
    batch = (inference or {}).get("ot_batch_size")
    note = (f"OT inference couples each random test batch of {batch} images separately (the DB-OT paper's "
            "setting); whole-test-set couplings, every other inference setting and many/medium/few accuracies "
            "are in summary_full.md." if batch else "Every other setting is in summary_full.md.")
    headline = headline_markdown(payload, note=note)
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(headline + "".join(f"\n![{f}]({f})\n" for f in figures))
    return headline
