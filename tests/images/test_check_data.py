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
    ("cifar10-lt", "CIFAR10 batches", "cifar10_lt_if200"),
    ("cifar100-lt", "CIFAR100 batches", "cifar100_lt_if200"),
    ("imagenet-lt", "ImageNet_LT_train.txt not found", "imagenet_lt"),
])
def test_make_target_stops_before_any_run(target, says, results, tmp_path):
    proc = subprocess.run(["make", "-s", target, f"DATA_ROOT={tmp_path}"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0
    assert "otcls check-data:" in proc.stderr and says in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not os.path.isdir(os.path.join(REPO, "results", results, "runs"))  # no run was started


def _imagenet_lists(lists, images, n_classes=2):
    """The three ImageNet-LT list files in their format (``relative/path.JPEG label`` a line) and the images."""
    from PIL import Image
    for split in ("train", "val", "test"):
        lines = []
        for c in range(n_classes):
            rel = f"{split}/n{c:08d}/{split}_{c}.JPEG"
            os.makedirs(os.path.join(images, os.path.dirname(rel)), exist_ok=True)
            Image.new("RGB", (8, 8), (c * 60, 0, 0)).save(os.path.join(images, rel), format="JPEG")
            lines.append(f"{rel} {c}")
        with open(os.path.join(lists, f"ImageNet_LT_{split}.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")


def test_imagenet_lists_elsewhere_and_every_list_checked(tmp_path, capsys):
    images, lists = tmp_path / "imagenet", tmp_path / "lists"
    images.mkdir(), lists.mkdir()
    _imagenet_lists(str(lists), str(images))
    argv = ["--config", f"{CFG}/base/imagenet.yaml", f"{CFG}/imagenet_lt/data.yaml", "--root", str(images)]
    assert check.main(argv + ["--set", f"list_dir={lists}"]) == 0
    assert "2 training images" in capsys.readouterr().out
    os.remove(lists / "ImageNet_LT_test.txt")  # train present, test list missing: still a failed check
    assert check.main(argv + ["--set", f"list_dir={lists}"]) == 2
    assert "ImageNet_LT_test.txt not found" in capsys.readouterr().err
    assert check.main(argv + ["--set", "list_dir"]) == 2
    assert "--set takes KEY=VALUE" in capsys.readouterr().err


def test_make_imagenet_lt_takes_the_lists_from_list_dir(tmp_path):
    proc = subprocess.run(["make", "-s", "imagenet-lt", f"DATA_ROOT={tmp_path}/img", f"LIST_DIR={tmp_path}/lists",
                           "DRY_RUN=1", "SEEDS=0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"--data.init_args.list_dir {tmp_path}/lists" in proc.stdout
    proc = subprocess.run(["make", "-s", "imagenet-lt", f"DATA_ROOT={tmp_path}", "DRY_RUN=1", "SEEDS=0"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert f"--data.init_args.list_dir {tmp_path}" in proc.stdout  # DATA_ROOT holds both by default
