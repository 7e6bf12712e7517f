"""CIFAR-10-LT through the real loader: broken batch files (always), and the real CIFAR-10 files where
``OTCLS_CIFAR10_ROOT`` points at a folder holding ``cifar-10-batches-py/`` (``.ci/run`` builds one)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

from torchvision.datasets import CIFAR10

from otcls.data import CIFAR10LTDataModule
from otcls.data.longtail import longtail_counts

from .conftest import write_cifar

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs")
REAL = os.environ.get("OTCLS_CIFAR10_ROOT")
needs_real = pytest.mark.skipif(
    not REAL or not os.path.isfile(os.path.join(REAL, "cifar-10-batches-py", "test_batch")),
    reason="set OTCLS_CIFAR10_ROOT to a folder holding the official cifar-10-batches-py/ (see docs/images.md)")


@pytest.fixture()
def broken_root(tmp_path):
    write_cifar(str(tmp_path), 10, 20, 4)
    return tmp_path, tmp_path / "cifar-10-batches-py"


def _setup(root):
    CIFAR10LTDataModule(root=str(root), imbalance_factor=2, val_per_class=1).setup()


def test_truncated_batch_names_the_file(broken_root):
    root, folder = broken_root
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"data_batch_3 \(5000 bytes\) is not a readable CIFAR batch.*download again"):
        _setup(root)


@pytest.mark.parametrize("payload", [b"", b"\x80\x04garbage\x00\xff" * 10])
def test_empty_or_corrupted_batch_names_the_file(broken_root, payload):
    root, folder = broken_root
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(ValueError, match="test_batch .* is not a readable CIFAR batch"):
        _setup(root)


def test_wrong_label_count_names_the_file(broken_root):
    root, folder = broken_root
    path = folder / "data_batch_1"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    entry["labels"] = entry["labels"][:-3]
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(ValueError, match=r"data_batch_1: 40 images but 37 labels in 'labels'"):
        _setup(root)


def test_wrong_keys_and_pixel_rows_name_the_file(broken_root):
    root, folder = broken_root
    path = folder / "data_batch_2"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    path.write_bytes(pickle.dumps({"data": entry["data"][:, :100], "labels": entry["labels"]}))
    with pytest.raises(ValueError, match="data_batch_2: 'data' must be uint8 rows of 3072 pixels"):
        _setup(root)
    path.write_bytes(pickle.dumps({"data": entry["data"], "fine_labels": entry["labels"]}))
    with pytest.raises(ValueError, match="expected keys 'data' and 'labels', found"):
        _setup(root)


def test_missing_test_batch_says_where_and_how(broken_root):
    root, folder = broken_root
    os.remove(folder / "test_batch")
    with pytest.raises(ValueError, match=r"\['test_batch'\] not found in .*download: true"):
        _setup(root)
    class NoNetwork(CIFAR10):
        def __init__(self, *args, **kwargs):  # a download that fetched nothing
            pass

    dm = CIFAR10LTDataModule(root=str(root), download=True)
    dm.tv_class = NoNetwork
    with pytest.raises(ValueError, match="download is on but it failed to provide them") as info:
        dm.prepare_data()
    assert "download: true" not in str(info.value)  # it is on already: the advice is the archive, not the flag

    class Offline(CIFAR10):
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    dm.tv_class = Offline
    with pytest.raises(ValueError, match=r"download is on but it failed \(URLError: .*name resolution.*no network"):
        dm.prepare_data()


# --- the real CIFAR-10 files ---------------------------------------------------------------------------------
@needs_real
@pytest.mark.parametrize("imbalance, total", [(200, 11203), (100, 12406), (10, 20431)])
def test_real_profile_counts(imbalance, total):
    dm = CIFAR10LTDataModule(root=REAL, imbalance_factor=imbalance, val_fraction=0.0, pipeline="device")
    dm.setup()
    assert dm.class_counts == longtail_counts(5000, 10, imbalance) and sum(dm.class_counts) == total


@needs_real
def test_real_protocol_splits_and_shot_groups():
    """The shipped CIFAR10-LT data config: 100 validation images per class held out first, IF 100."""
    import yaml
    with open(os.path.join(CFG, "cifar10_lt", "data.yaml")) as fh:
        init = yaml.safe_load(fh)["data"]["init_args"]
    init.update(root=REAL, download=False)
    dm = CIFAR10LTDataModule(**init)
    dm.setup()
    train, val = dm.split("train"), dm.split("val")
    assert len(set(train.indices) & set(val.indices)) == 0
    assert np.bincount(val.y.numpy(), minlength=10).tolist() == [100] * 10
    profile = longtail_counts(5000, 10, 100)
    assert dm.class_counts == [4900] + profile[1:]  # the head class keeps what the hold-out leaves
    assert dm._test_counts["balanced"] == [1000] * 10
    assert dm._test_counts["lt"] == longtail_counts(1000, 10, 100)
    assert dm._test_counts["reverse_lt"] == longtail_counts(1000, 10, 100, reverse=True)
    assert sum(dm._test_counts["lt"]) == sum(dm._test_counts["reverse_lt"]) == 2478
    groups = dm.shot_groups()
    assert groups == {"many": [0, 1, 2, 3, 4, 5, 6, 7], "medium": [], "few": [8, 9]}  # many > 100, few <= 100
    # every real image made it through: pixel statistics of the real set, not of a placeholder
    x = dm._train_images.float() / 255
    assert 0.4 < float(x.mean()) < 0.55 and float(x.std()) > 0.2


@needs_real
@pytest.mark.timeout(900)
def test_real_fit_and_test_through_the_cli(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "otcls.cli", "fit",
            "--config", f"{CFG}/base/cifar.yaml", "--config", f"{CFG}/cifar10_lt/data.yaml",
            "--config", f"{CFG}/cifar10_lt/ce.yaml",
            "--data.init_args.root", REAL, "--data.init_args.download", "false",
            "--data.init_args.batch_size", "64", "--data.init_args.max_test_per_class", "100",
            "--model.init_args.backbone", "conv_mlp",
            "--model.init_args.backbone_kwargs", "{in_channels: 3, channels: [8, 16], hidden: 32, image_size: 32}",
            "--model.init_args.warmup_steps", "2", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run / "test_results.json") as fh:
        res = json.load(fh)["results"]
    assert list(res) == ["balanced", "lt", "reverse_lt"]
    assert res["balanced"]["softmax"]["n"] == 1000 and 0 <= res["balanced"]["softmax"]["top1"] <= 100
    shutil.rmtree(run)
