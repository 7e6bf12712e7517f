"""Each launcher of ``otcls sweep`` (local, GPU slots, SLURM) gives every run its own seed: for seeds 3 and 7 the
commands set ``--seed_everything``, the data seed and the run folder to that run's seed (via ``--dry-run``)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = [f"{REPO}/configs/cifar10_lt/{m}.yaml" for m in ("ce", "focal")]


@pytest.mark.parametrize("launcher", [[], ["--gpus", "0,1"], ["--slurm", "--slurm-cluster", "local"]],
                         ids=["local", "gpu-slots", "slurm"])
def test_every_run_gets_its_own_seed(launcher, tmp_path):
    out = subprocess.run([sys.executable, "-m", "otcls.cli", "sweep", "--base", f"{REPO}/configs/base/cifar.yaml",
                          f"{REPO}/configs/cifar10_lt/data.yaml", "--methods", *METHODS, "--seeds", "3", "7",
                          "--out", str(tmp_path / "sweep"), "--dry-run", *launcher],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "--seed_everything" in line]
    # seed-major order, written out by hand
    assert [line.split(":", 1)[0] for line in lines] == ["ce/seed3", "focal/seed3", "ce/seed7", "focal/seed7"]
    for line in lines:
        seed = line.split(":", 1)[0].rsplit("seed", 1)[1]
        method = line.split("/", 1)[0]
        assert re.search(rf"--seed_everything {seed}( |$)", line), line
        assert re.search(rf"--data\.init_args\.seed {seed}( |$)", line), line
        assert f"--trainer.default_root_dir {tmp_path}/sweep/runs/{method}/seed{seed} " in line, line
    assert not (tmp_path / "sweep" / "runs").exists()
