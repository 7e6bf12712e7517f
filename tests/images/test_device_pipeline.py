"""``pipeline: device``: the long-tailed training images held once on the device and augmented there per batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from otcls.data import CIFAR10LTDataModule, ImageNetLTDataModule
from otcls.data.base import IndexBatch, TensorSubset

HERE = os.path.dirname(os.path.abspath(__file__))


def datamodule(root, **kw):
    dm = CIFAR10LTDataModule(root=root, imbalance_factor=5, val_per_class=2, batch_size=16, seed=0, **kw)
    dm.setup()
    return dm


def test_device_batches_are_the_images_of_their_positions(cifar10_root):
    """augment none: the batch the device path builds equals the in-memory split of the workers path."""
    dev = datamodule(cifar10_root, pipeline="device", augment="none")
    host = datamodule(cifar10_root, pipeline="workers", augment="none")
    assert isinstance(host.split("train"), TensorSubset)
    assert dev.class_counts == host.class_counts
    batch = next(iter(dev.train_dataloader()))
    assert isinstance(batch, IndexBatch) and batch.index.dtype == torch.long
    x, y = dev.on_after_batch_transfer(batch, 0)
    ref_x, ref_y = host.split("train").__getitems__(batch.index.tolist())
    torch.testing.assert_close(x, ref_x, rtol=0, atol=1e-5)
    assert torch.equal(y, ref_y)


def test_augmented_batch_uses_the_datamodule_transform_and_seed(cifar10_root):
    dm = datamodule(cifar10_root, pipeline="device", augment="autoaugment")
    batch = dm.split("train").__getitems__(list(range(16)))
    x1, _ = dm.on_after_batch_transfer(batch, 0)
    dm2 = datamodule(cifar10_root, pipeline="device", augment="autoaugment")
    x2, _ = dm2.on_after_batch_transfer(batch, 0)
    assert torch.equal(x1, x2)  # same (seed, rank, epoch): same draws
    x3, _ = dm.on_after_batch_transfer(batch, 0)
    assert not torch.equal(x1, x3)  # the generator moves on from batch to batch
    other = datamodule(cifar10_root, pipeline="device", augment="autoaugment")
    other.seed = 1
    assert not torch.equal(other.on_after_batch_transfer(batch, 0)[0], x1)


def test_eval_batches_pass_through(cifar10_root):
    dm = datamodule(cifar10_root, pipeline="device")
    batch = next(iter(dm.test_dataloader()[0]))
    assert dm.on_after_batch_transfer(batch, 0) is batch and batch[0].dtype == torch.float32


def test_device_pipeline_is_refused_for_datasets_read_from_files(imagenet_lt_root):
    with pytest.raises(ValueError, match="pipeline: device needs a dataset held in memory"):
        ImageNetLTDataModule(root=imagenet_lt_root, pipeline="device")
    with pytest.raises(ValueError, match="pipeline must be one of"):
        CIFAR10LTDataModule(root=".", pipeline="gpu")


@pytest.mark.timeout(600)
def test_ddp_each_rank_sees_its_own_shard_of_every_epoch(cifar10_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_ddp_shards.py"), cifar10_root, str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    n = ranks[0]["n"]
    for epoch in ("0", "1"):
        a, b = (np.array(r["seen"][epoch]) for r in ranks)
        assert len(a) == len(b) == (n + 1) // 2  # DistributedSampler: equal shards, padded to even
        assert set(a) | set(b) == set(range(n))  # together: the whole training set
        assert len(set(a) & set(b)) <= n % 2  # apart: disjoint but for the padding repeat
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"]  # reshuffled every epoch


def test_input_pipeline_bench_writes_its_table(tmp_path, cifar10_root):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "experiments", "images",
                                                        "bench_input_pipeline.py"), "--batch", "16", "--repeats", "1",
                           "--data-root", cifar10_root, "--device", "cpu", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.load(open(tmp_path / "input_pipeline.json"))
    assert set(payload["rows"]) == {f"{a}/{p}" for a in ("standard", "autoaugment") for p in ("workers", "device")}
    assert all(r["images_per_s"] > 0 and 0 < r["step_share"] < 1 for r in payload["rows"].values())
    assert "| autoaugment | device |" in open(tmp_path / "input_pipeline.md").read()


def test_gpu_check_script_parses_and_refuses_a_missing_root(tmp_path):
    script = os.path.join(HERE, "..", "..", "experiments", "gpu", "check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    proc = subprocess.run(["bash", script, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no cifar-10-batches-py/" in proc.stderr
