"""A sweep stopped mid-run (SIGTERM, as a scheduler or Ctrl-C would) stops its runs with it, and the same command
run again resumes the unfinished run from its own last.ckpt at the right epoch and ends with a complete summary."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from .test_cli_images import REPO

EPOCHS = 40


def _cmd(fmnist_root, out):
    return [sys.executable, "-m", "otcls.cli", "sweep", "--base", f"{REPO}/configs/base/fmnist.yaml", "--methods",
            f"{REPO}/configs/fmnist_lt/ce.yaml", "--seeds", "0", "--out", str(out), "--",
            "--data.init_args.root", fmnist_root, "--data.init_args.n_max", "60", "--data.init_args.val_per_class", "6",
            "--data.init_args.imbalance_factor", "10", "--model.init_args.backbone_kwargs", "{in_channels: 1, channels: [8]}",
            "--trainer.max_epochs", str(EPOCHS), "--trainer.enable_progress_bar", "false"]


def _epoch(path):
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"]


def test_sweep_killed_mid_run_resumes_at_the_right_epoch(fmnist_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = tmp_path / "sweep"
    last = out / "runs" / "ce" / "seed0" / "checkpoints" / "last.ckpt"
    with open(tmp_path / "first.log", "w") as log:
        sweep = subprocess.Popen(_cmd(fmnist_root, out), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline and sweep.poll() is None:
            time.sleep(0.2)
            try:
                if last.is_file() and _epoch(last) >= 1:
                    break
            except Exception:  # caught while being written
                continue
        assert sweep.poll() is None, open(tmp_path / "first.log").read()[-3000:]
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=120) == 130
    text = open(tmp_path / "first.log").read()
    assert "Run the same command again to resume" in text
    stopped_at = _epoch(last)
    assert 1 <= stopped_at < EPOCHS - 1
    mtime = last.stat().st_mtime
    time.sleep(3)
    assert last.stat().st_mtime == mtime  # the run stopped with the sweep: nothing writes its checkpoints
    assert not (out / "runs" / "ce" / "seed0" / "test_results.json").exists()

    again = subprocess.run(_cmd(fmnist_root, out), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {last} (epoch {stopped_at}" in again.stdout + again.stderr
    assert _epoch(last) == EPOCHS - 1
    results = json.load(open(out / "runs" / "ce" / "seed0" / "test_results.json"))
    summary = json.load(open(out / "summary.json"))
    assert summary["methods"]["ce"]["seeds"]["0"]["balanced"]["softmax"]["top1"] == \
        results["results"]["balanced"]["softmax"]["top1"]
    assert not list((out / "runs" / "ce").glob("seed0.attempt-*"))  # resumed in place, nothing set aside
