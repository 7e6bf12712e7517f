"""What changes with N devices: the global batch and lr the run reports, the opt-in linear-scaling rule and a
warm-up in epochs that keeps its share of training (by hand, then a real 2-process gloo DDP fit)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml

from otcls.tasks.common import check_schedule_options, effective_schedule, global_batch_size

from .test_cli_images import fmnist_args


class HP(dict):
    __getattr__ = dict.__getitem__


def _trainer(world_size, accumulate=1, batch=512, max_epochs=10):
    return SimpleNamespace(world_size=world_size, accumulate_grad_batches=accumulate, max_epochs=max_epochs,
                           datamodule=SimpleNamespace(batch_size=batch))


def test_linear_scaling_and_warmup_in_epochs_by_hand():
    hp = HP(lr=0.2, warmup_steps=800, warmup_epochs=None, lr_reference_batch=None)
    assert global_batch_size(_trainer(4)) == 2048
    assert global_batch_size(_trainer(2, accumulate=3, batch=64)) == 384
    # defaults: lr and warm-up steps as given, whatever the device count (the warm-up's share grows with N)
    assert effective_schedule(hp, _trainer(4), 3520) == (0.2, 800)
    # linear scaling: 0.2 tuned for 512 → 0.8 at 4 × 512
    assert effective_schedule(HP(hp, lr_reference_batch=512), _trainer(4), 3520) == (pytest.approx(0.8), 800)
    # warm-up in epochs: 36 epochs of 10 is 36 % of the run on 1 device (14,080 steps) and on 4 (3,520)
    one = effective_schedule(HP(hp, warmup_steps=0, warmup_epochs=3.6), _trainer(1), 14080)
    four = effective_schedule(HP(hp, warmup_steps=0, warmup_epochs=3.6), _trainer(4), 3520)
    assert (one[1], four[1]) == (5069, 1267)
    assert one[1] / 14080 == pytest.approx(four[1] / 3520, abs=1e-3)
    with pytest.raises(ValueError, match="give the warm-up once"):
        check_schedule_options(None, 800, 3.0)
    with pytest.raises(ValueError, match="lr_reference_batch must be an integer >= 1"):
        check_schedule_options(0, 0, None)


@pytest.mark.timeout(600)
def test_two_gloo_processes_report_global_batch_scaled_lr_and_warmup(fmnist_root, tmp_path):
    run_dir = tmp_path / "run"
    args = [a for a in fmnist_args(fmnist_root, str(run_dir)) if a]
    i = args.index("--model.init_args.warmup_steps")
    args[i + 1] = "0"
    cmd = [sys.executable, "-m", "otcls.cli", "fit", *args, "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--trainer.strategy", "ddp", "--model.init_args.lr", "0.1",
           "--model.init_args.lr_reference_batch", "32", "--model.init_args.warmup_epochs", "1",
           "--test_after_fit", "false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=550,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = re.search(r"otcls: global batch (\d+) \(32 per device × 2 device\(s\) × 1 accumulation\); lr ([\d.]+); "
                     r"warm-up (\d+) steps = ([\d.]+) % of (\d+) steps", proc.stderr)
    assert line, proc.stderr[-3000:]
    batch, lr, warmup, share, total = line.groups()
    assert (int(batch), float(lr)) == (64, pytest.approx(0.2))  # 0.1 × 64 / 32
    assert int(total) % 2 == 0 and int(warmup) == int(total) // 2  # one of two epochs
    assert proc.stderr.count("otcls: global batch") == 1  # rank 0 only
    hparams = yaml.safe_load(open(run_dir / "logs" / "version_0" / "hparams.yaml"))
    assert hparams["optim/global_batch_size"] == 64 and hparams["optim/lr"] == pytest.approx(0.2)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.2)
