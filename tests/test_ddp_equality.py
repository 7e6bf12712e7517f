"""``otcls test`` of one checkpoint on 2 CPU processes (gloo DDP) equals one process, metric for metric, for
the image and contrastive tasks (the molecule and LVIS tasks have theirs in tests/mol and tests/lvis).
Test sets whose size does not divide by 2 make the distributed sampler pad with a repeated sample."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .test_cli_images import fmnist_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs")
TWO = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def _cli(args):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _one_vs_two(args, fit_extra, tmp_path):
    """Fit once (one process), then test its checkpoint with one and with two processes."""
    fit_dir = str(tmp_path / "fit")
    _cli(["fit", *args(fit_dir), *fit_extra, "--test_after_fit", "false"])
    ckpt = os.path.join(fit_dir, "checkpoints", "last.ckpt")
    out = {}
    for name, extra in (("one", []), ("two", TWO)):
        run_dir = str(tmp_path / name)
        own = os.path.join(run_dir, "model.ckpt")  # each test run gets its own copy: results go beside it
        os.makedirs(run_dir)
        shutil.copy(ckpt, own)
        proc = _cli(["test", *args(run_dir), *extra, "--ckpt_path", own])
        assert "sync_dist" not in proc.stderr  # no Lightning warning flood about epoch-level logging
        with open(os.path.join(run_dir, "model.test_results.json")) as fh:
            out[name] = json.load(fh)["results"]
    return out["one"], out["two"]


def _assert_same(one, two, where="results"):
    """Equal structure, every number equal to 1e-9 (NaN equals NaN: an empty shot group)."""
    if isinstance(one, dict):
        assert list(one) == list(two), where
        for key in one:
            _assert_same(one[key], two[key], f"{where}/{key}")
    elif isinstance(one, list):
        assert len(one) == len(two), where
        for k, (a, b) in enumerate(zip(one, two)):
            _assert_same(a, b, f"{where}[{k}]")
    elif isinstance(one, float):
        assert two == pytest.approx(one, abs=1e-9, nan_ok=True), where
    else:
        assert one == two, where


@pytest.mark.timeout(900)
def test_image_task_two_processes_equal_one(fmnist_root, tmp_path):
    one, two = _one_vs_two(lambda d: [*fmnist_args(fmnist_root, d, "balanced_softmax"),
                                      "--data.init_args.eval_batch_size", "16",
                                      "--data.init_args.imbalance_factor", "5"],  # LT test sets of 57 images
                           ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"], tmp_path)
    sizes = {variant: res["softmax"]["n"] for variant, res in one.items()}
    assert any(n % 2 for n in sizes.values()), sizes  # a padded repeat on one rank
    _assert_same(one, two)  # every setting, per-batch and whole-set OT included (batches drawn by sample index)


@pytest.mark.timeout(900)
def test_contrastive_task_two_processes_equal_one(fmnist_root, tmp_path):
    def args(run_dir):
        return ["--config", f"{CFG}/contrastive/fmnist_lt/base.yaml", "--config", f"{CFG}/contrastive/fmnist_lt/supcon.yaml",
                "--data.init_args.root", fmnist_root, "--data.init_args.n_max", "40",
                "--data.init_args.imbalance_factor", "5", "--data.init_args.max_test_per_class", "null",
                "--data.init_args.batch_size", "16", "--data.init_args.eval_batch_size", "16",
                "--model.init_args.backbone_kwargs", "{in_channels: 1, channels: [4, 8]}",
                "--model.init_args.proj_dim", "8", "--model.init_args.probe_epochs", "3",
                "--trainer.default_root_dir", run_dir, "--trainer.enable_progress_bar", "false"]

    one, two = _one_vs_two(args, ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                                  "--trainer.limit_val_batches", "1"], tmp_path)
    assert any(res["softmax"]["n"] % 2 for res in one.values())
    _assert_same(one, two)


@pytest.mark.timeout(900)
def test_predict_two_processes_write_the_one_process_file(fmnist_root, tmp_path):
    """``otcls predict`` on 2 processes gathers the ranks' logits and writes one file equal to one process's
    (EM priors and OT couplings over the whole set, not per rank)."""
    def args(run_dir):
        return [*fmnist_args(fmnist_root, run_dir, "ce"), "--data.init_args.eval_batch_size", "16"]

    fit_dir = str(tmp_path / "fit")
    _cli(["fit", *args(fit_dir), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
          "--test_after_fit", "false"])
    files = {}
    for name, extra in (("one", []), ("two", TWO)):
        run_dir = str(tmp_path / name)
        os.makedirs(run_dir)
        shutil.copy(os.path.join(fit_dir, "checkpoints", "last.ckpt"), os.path.join(run_dir, "model.ckpt"))
        _cli(["predict", *args(run_dir), *extra, "--ckpt_path", os.path.join(run_dir, "model.ckpt")])
        assert sorted(f for f in os.listdir(run_dir) if f.endswith(".csv")) == ["model.predictions.csv"]
        with open(os.path.join(run_dir, "model.predictions.csv")) as fh:
            files[name] = fh.read()
    assert files["two"] == files["one"]
    assert files["one"].count("\n") == 121  # header + the 120 balanced test images
