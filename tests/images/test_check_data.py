"""Benchmark targets check their data first: one message, no traceback, non-zero exit."""
from __future__ import annotations

import os
import subprocess

import pytest

from otcls.data import check

from .conftest import write_cifar

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs")


@pytest.mark.parametrize("bench,base,says", [
    ("cifar10_lt", "cifar", "CIFAR10 batches"),
    ("cifar100_lt", "cifar", "CIFAR100 batches"),
    ("imagenet_lt", "imagenet", "ImageNet_LT_train.txt not found"),
])
def test_missing_data_one_message(bench, base, says, tmp_path, capsys):
    rc = check.main(["--config", f"{CFG}/base/{base}.yaml", f"{CFG}/{bench}/data.yaml", "--root", str(tmp_path),
                     "--no-download"])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and "DATA_ROOT" in err and "Traceback" not in err


def test_present_data_passes(tmp_path, capsys):
    write_cifar(str(tmp_path), 10, 12, 2)
    assert check.main(["--config", f"{CFG}/base/cifar.yaml", f"{CFG}/cifar10_lt/data.yaml",
                       "--root", str(tmp_path)]) == 0
    assert "120 training images" in capsys.readouterr().out


@pytest.mark.parametrize("target,says,results", [
    ("cifar10-lt", "CIFAR10LTDataModule: data not found", "cifar10_lt_if200"),
    ("cifar100-lt", "CIFAR100LTDataModule: data not found", "cifar100_lt_if200"),
    ("imagenet-lt", "ImageNet_LT_train.txt not found", "imagenet_lt"),
])
def test_make_target_stops_before_any_run(target, says, results, tmp_path):
    proc = subprocess.run(["make", "-s", target, f"DATA_ROOT={tmp_path}"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0
    assert "otcls check-data:" in proc.stderr and says in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not os.path.isdir(os.path.join(REPO, "results", results, "runs"))  # no run was started
