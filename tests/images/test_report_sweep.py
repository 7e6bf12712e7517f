"""``otcls report`` on hand-written run folders and ``otcls sweep`` end to end on tiny data."""
import json
import math
import os
import statistics

import pytest

from otcls.reporting import report
from otcls.sweeps import cli as sweep
from otcls.sweeps.plan import Dependency, parse_dependencies, selected_checkpoint
from otcls.reporting.results import flat_test_metrics, nest, pm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_run(run_dir, loss, top1, lambdas):
    os.makedirs(os.path.join(run_dir, "logs", "version_0"))
    res = {"balanced": {"softmax": {"top1": top1, "many": 90.0, "medium": 50.0, "few": float("nan"), "n": 4,
                                    "per_class": [100.0, 50.0, 0.0], "confusion": [[1, 0, 0], [1, 1, 0], [0, 1, 0]]}}}
    with open(os.path.join(run_dir, "test_results.json"), "w") as fh:
        json.dump({"loss": loss, "class_counts": [200, 50, 30], "results": res}, fh)
    rows = "epoch,step,train/lambda\n" + "".join(f"{e},{e * 3},{lam}\n" for e, lam in enumerate(lambdas))
    with open(os.path.join(run_dir, "logs", "version_0", "metrics.csv"), "w") as fh:
        fh.write(rows)


def test_report_table_json_and_plots(tmp_path):
    a, b = str(tmp_path / "ce" / "seed0"), str(tmp_path / "reot" / "seed0")
    write_run(a, "ce", 61.5, [])
    write_run(b, "reot", 70.25, [0.0, 0.5, 1.0])
    out = str(tmp_path / "out")
    assert report.main([a, b, "--out", out]) == 0
    md = open(os.path.join(out, "report.md")).read()
    assert "| ce/seed0 | balanced/softmax | 61.50 | 90.00 | 50.00 | — |" in md
    assert "| reot/seed0 | balanced/softmax | 70.25 |" in md
    data = json.load(open(os.path.join(out, "report.json")))
    assert data["metrics"]["reot/seed0"]["balanced/softmax/top1"] == 70.25
    assert set(data["figures"]) == {"per_class_accuracy.png", "lambda.png", "confusion_ce_seed0.png",
                                    "confusion_reot_seed0.png"}
    for f in data["figures"]:
        assert os.path.getsize(os.path.join(out, f)) > 1000


def test_report_rejects_missing_run(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        report.main([str(tmp_path / "nope")])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no test_results.json"):
        flat_test_metrics(str(tmp_path / "empty"))


def test_nest():
    assert nest({"a/b/c": 1, "a/b/d": 2, "x": 3}) == {"a": {"b": {"c": 1, "d": 2}}, "x": 3}


def test_sweep_two_seeds_end_to_end(fmnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "sweep")
    argv = ["--base", f"{REPO}/configs/base/fmnist.yaml", "--methods", f"{REPO}/configs/fmnist_lt/ce.yaml",
            f"{REPO}/configs/fmnist_lt/dbot.yaml", "--finetune", "dbot=ce", "--seeds", "0", "1", "--jobs", "2",
            "--out", out, "--", "--data.init_args.root", fmnist_root, "--data.init_args.n_max", "60", "--data.init_args.val_per_class", "6", "--data.init_args.imbalance_factor", "10",
            "--trainer.max_epochs", "1", "--model.init_args.backbone_kwargs", "{in_channels: 1, channels: [8]}",
            "--trainer.enable_progress_bar", "false"]
    assert sweep.main(argv) == 0
    for s in ("0", "1"):  # each DB-OT run fine-tuned the CE model of its own seed
        dbot = json.load(open(os.path.join(out, "runs", "dbot", f"seed{s}", "test_results.json")))
        assert dbot["init_checkpoint"] == selected_checkpoint(os.path.join(out, "runs", "ce", f"seed{s}"))
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert sorted(summary["methods"]) == ["ce", "dbot"]
    headline = open(os.path.join(out, "summary.md")).read()
    # every number comes from the runs' own test_results.json: per seed, and mean / sample std over the seeds
    for method in ("ce", "dbot"):
        runs = {s: json.load(open(os.path.join(out, "runs", method, f"seed{s}", "test_results.json")))["results"]
                for s in ("0", "1")}
        entry = summary["methods"][method]
        assert sorted(entry["seeds"]) == ["0", "1"]
        for variant, settings in runs["0"].items():
            for setting, res in settings.items():
                if "top1" not in res:
                    continue  # the EM prior block
                for metric in ("top1", "many", "medium", "few"):
                    vals = [runs[s][variant][setting][metric] for s in ("0", "1")]
                    for s, v in zip(("0", "1"), vals):
                        assert entry["seeds"][s][variant][setting][metric] == pytest.approx(v, nan_ok=True)
                    agg = entry["aggregate"][variant][setting][metric]
                    if any(math.isnan(v) for v in vals):
                        continue
                    assert agg["mean"] == pytest.approx(statistics.mean(vals))
                    assert agg["std"] == pytest.approx(statistics.stdev(vals))
        headline_top1 = [[runs[s][variant][setting]["top1"] for s in ("0", "1")]
                         for variant in ("balanced", "lt", "reverse_lt")
                         for setting in ("softmax", "dbot:known", "dbot:estimated")]
        cells = [pm(statistics.mean(vals), statistics.stdev(vals)) for vals in headline_top1]
        assert f"| {method} | 2 | " + " | ".join(cells) + " |" in headline
    assert "| ce | balanced/reot_whole:known |" in open(os.path.join(out, "summary_full.md")).read()
    assert headline.startswith("# Headline")
    assert os.path.isfile(os.path.join(out, "prior_shift.png"))
    assert os.path.isfile(os.path.join(out, "per_class_vs_frequency.png"))
    assert "| 0 |" in open(os.path.join(out, "learning_curves.md")).read()
    # a rerun reuses the finished runs: same numbers, no new run directory version
    before = open(os.path.join(out, "summary.md")).read()
    assert sweep.main(argv) == 0
    assert open(os.path.join(out, "summary.md")).read() == before
    assert not os.path.isdir(os.path.join(out, "runs", "ce", "seed0", "logs", "version_1"))


def test_finetune_pairs_are_checked():
    with pytest.raises(ValueError, match="CHILD=PARENT"):
        parse_dependencies({"finetune": ["dbot=cee"]}, ["ce", "dbot"])
    with pytest.raises(ValueError, match="chains"):
        parse_dependencies({"finetune": ["a=b", "b=c"]}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="two parent runs"):
        parse_dependencies({"finetune": ["a=b"], "teacher": ["a=c"]}, ["a", "b", "c"])
    assert parse_dependencies({"finetune": ["dbot=ce"], "teacher": ["reot_teacher=ce"]},
                              ["ce", "dbot", "reot_teacher"]) == {"dbot": Dependency("ce", "finetune"),
                                                                  "reot_teacher": Dependency("ce", "teacher")}


def test_sweep_rejects_missing_config(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        sweep.main(["--methods", str(tmp_path / "x.yaml"), "--out", str(tmp_path)])


def test_sweep_on_slurm_through_submitit_local_executor(fmnist_root, tmp_path, monkeypatch):
    """The SLURM path end to end with submitit's local executor: one array for CE, a second for the DB-OT
    fine-tuning that needs CE's checkpoint; results equal each run's own test_results.json."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "slurm_sweep")
    argv = ["--base", f"{REPO}/configs/base/fmnist.yaml", "--methods", f"{REPO}/configs/fmnist_lt/ce.yaml",
            f"{REPO}/configs/fmnist_lt/dbot.yaml", "--finetune", "dbot=ce", "--seeds", "0", "--out", out,
            "--slurm", "--slurm-cluster", "local", "--slurm-gpus-per-task", "0", "--slurm-cpus-per-task", "1",
            "--", "--data.init_args.root", fmnist_root, "--data.init_args.n_max", "60", "--data.init_args.val_per_class", "6", "--data.init_args.imbalance_factor", "10", "--trainer.max_epochs", "1",
            "--model.init_args.backbone_kwargs", "{in_channels: 1, channels: [8]}",
            "--trainer.enable_progress_bar", "false"]
    assert sweep.main(argv) == 0
    summary = json.load(open(os.path.join(out, "summary.json")))
    for method in ("ce", "dbot"):
        run = json.load(open(os.path.join(out, "runs", method, "seed0", "test_results.json")))
        got = summary["methods"][method]["seeds"]["0"]["balanced"]["softmax"]["top1"]
        assert got == pytest.approx(run["results"]["balanced"]["softmax"]["top1"])
    dbot = json.load(open(os.path.join(out, "runs", "dbot", "seed0", "test_results.json")))
    assert dbot["init_checkpoint"] == selected_checkpoint(os.path.join(out, "runs", "ce", "seed0"))
    assert os.listdir(os.path.join(out, "slurm"))  # submitit's job folders (pickled tasks, logs)
