"""docs/custom_data.md's example, run as the page shows it: a user's own long-tailed DataModule
(examples/custom_data) through ``otcls fit`` with every classification loss, then ``otcls test`` and
``otcls predict`` with every inference mode; metric names as for the built-in benchmarks."""
from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from otcls.lightning_cli import run
from otcls.losses import LOSSES
from otcls.tasks.image import INFERENCE_MODES, TEST_PRIORS, inference_settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "custom_data")
CLASSIFICATION_LOSSES = ("ce", "focal", "ldam", "logit_adjust", "cb_ce", "cb_focal", "balanced_softmax", "reot", "dbot")
CONTRASTIVE_LOSSES = ("nt_xent", "supcon", "reot_contrastive")  # representation losses, not for ImageClassifier
SETTINGS = [name for name, *_ in inference_settings(INFERENCE_MODES, TEST_PRIORS, 64, True)]
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> str:
    sys.path.insert(0, EXAMPLE)
    try:
        from make_toy_data import write_toy_data
    finally:
        sys.path.remove(EXAMPLE)
    return write_toy_data(str(tmp_path_factory.mktemp("toy") / "toy_lt.npz"))


def quick(path: str, run_dir: str) -> list:
    return ["--config", os.path.join(EXAMPLE, "config.yaml"), "--data.init_args.path", path,
            "--trainer.default_root_dir", run_dir, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
            "--trainer.enable_progress_bar", "false"]


def test_the_example_covers_every_classification_loss():
    assert sorted(CLASSIFICATION_LOSSES + CONTRASTIVE_LOSSES) == LOSSES.names()


def test_documented_command_logs_benchmark_style_metric_names(toy_data, tmp_path):
    run_dir = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": EXAMPLE, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", "fit", *quick(toy_data, run_dir)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [metrics] = glob.glob(os.path.join(run_dir, "logs", "version_*", "metrics.csv"))
    with open(metrics) as fh:
        names = {k for row in csv.DictReader(fh) for k, v in row.items() if k.startswith("test/") and v}
    assert names, "no test metric logged"
    assert {n.split("/")[1] for n in names} == {"balanced", "reverse"}  # test/<test set>/<setting>/<metric>
    assert {f"test/reverse/{s}/top1" for s in SETTINGS} <= names


@pytest.mark.parametrize("loss", CLASSIFICATION_LOSSES)
def test_fit_with_every_loss_tests_every_inference_mode(loss, toy_data, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLE)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run(["fit", *quick(toy_data, str(tmp_path)), "--model.init_args.loss", loss])
    saved = json.load(open(tmp_path / "test_results.json"))
    assert saved["loss"] == loss
    assert saved["class_counts"] == [196, 76, 26, 8]  # 200 / 80 / 30 / 12 minus 4 validation images a class
    assert list(saved["results"]) == ["balanced", "reverse"]
    for variant in saved["results"].values():
        assert list(variant) == [*SETTINGS, "em_prior"]
        assert variant["softmax"]["n"] in (100, 111)


def test_test_and_predict_a_checkpoint(toy_data, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLE)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = quick(toy_data, str(tmp_path))
    run(["fit", *args, "--test_after_fit", "false"])
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")
    run(["test", *args, "--ckpt_path", ckpt])
    tested = json.load(open(tmp_path / "checkpoints" / "last.test_results.json"))
    assert list(tested["results"]) == ["balanced", "reverse"]
    run(["predict", *args, "--ckpt_path", ckpt])
    with open(tmp_path / "checkpoints" / "last.predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100  # the first test set, balanced
    assert list(rows[0]) == ["index", "label", "softmax", "tau_norm", "class_bias:estimated", "reot:estimated",
                             "dbot:estimated", "reot_stream:estimated", "dbot_stream:estimated"]
