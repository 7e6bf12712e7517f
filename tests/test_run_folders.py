"""Run identities (``<method>-s<seed>``), run folders claimed atomically, ``last.ckpt`` always the last epoch, and
bad CLI input stopped before any training or test loop with a message saying what to do."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from jsonargparse import Namespace

from otcls.lightning_cli import (check_checkpoint_file, claim_run_dir, method_from_configs, run, run_name,
                                 wandb_identity)

from .test_cli_images import CFG, fmnist_args

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]


def _method_dirs():
    """Benchmark folder → its method configs (the files that set model / trainer.default_root_dir)."""
    out = {}
    for dirpath, _, files in os.walk(CFG):
        methods = []
        for f in sorted(files):
            if not f.endswith(".yaml") or f in ("data.yaml", "base.yaml"):
                continue
            with open(os.path.join(dirpath, f)) as fh:
                doc = yaml.safe_load(fh) or {}
            if "model" in doc or "default_root_dir" in (doc.get("trainer") or {}):
                methods.append(os.path.join(dirpath, f))
        if methods and "sweeps" not in dirpath and os.sep + "base" not in dirpath[len(CFG):]:
            out[os.path.relpath(dirpath, CFG)] = methods
    return out


def _identity(method_cfg: str, seed: int = 0) -> str:
    with open(method_cfg) as fh:
        loss = ((yaml.safe_load(fh) or {}).get("model") or {}).get("init_args", {}).get("loss")
    cfg = Namespace(seed_everything=seed, run_name=None,
                    model=Namespace(class_path="otcls.tasks.ImageClassifier", init_args=Namespace(loss=loss)))
    return run_name(cfg, method_from_configs(["--config", method_cfg]))


def test_every_method_config_of_every_benchmark_has_a_distinct_identity():
    dirs = _method_dirs()
    assert {"fmnist_lt", "cifar10_lt", "cifar100_lt", "imagenet_lt", "mol/losses"} <= set(dirs)
    for bench, methods in dirs.items():
        names = [_identity(m) for m in methods]
        assert len(set(names)) == len(names), (bench, names)
        if bench in ("fmnist_lt", "cifar10_lt", "cifar100_lt", "imagenet_lt"):  # the method config's own name
            assert names == [os.path.splitext(os.path.basename(m))[0] + "-s0" for m in methods], bench
    assert _identity(f"{CFG}/cifar10_lt/ldam_drw.yaml", 2) == "ldam_drw-s2"
    assert _identity(f"{CFG}/cifar10_lt/reot_teacher.yaml", 1) == "reot_teacher-s1"
    # the CPU protocol's overrides (no root of their own) keep the shared method config's name
    assert method_from_configs(["--config", f"{CFG}/cifar10_lt/dbot.yaml", "--config", f"{CFG}/cifar10_lt_cpu/base.yaml",
                                "--config", f"{CFG}/cifar10_lt_cpu/dbot.yaml"]) == "dbot"


def test_wandb_identity_name_and_tags():
    cfg = Namespace(seed_everything=1, run_name=None,
                    model=Namespace(class_path="otcls.tasks.ImageClassifier", init_args=Namespace(loss="ldam")),
                    data=Namespace(class_path="otcls.data.CIFAR10LTDataModule", init_args=Namespace(imbalance_factor=200)))
    ident = wandb_identity(cfg, "fit", "ldam_drw")
    assert ident["name"] == "ldam_drw-s1" and ident["group"] == "CIFAR10LT-IF200"
    assert ident["tags"] == ["loss:ldam", "benchmark:CIFAR10LT-IF200", "seed:1", "method:ldam_drw", "IF:200"]
    cfg.run_name = "mine"
    assert wandb_identity(cfg, "fit", "ldam_drw")["name"] == "mine-s1"


def test_claim_run_dir_takes_the_next_free_folder(tmp_path):
    root = str(tmp_path / "b" / "ce-s0")
    assert [claim_run_dir(root) for _ in range(3)] == [root, root + "-v1", root + "-v2"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot create the run folder"):
        claim_run_dir(str(blocker / "ce-s0"))


def test_two_fits_started_at_once_get_two_folders(fmnist_root, tmp_path):
    bench = tmp_path / "bench"
    where = tmp_path / "where.yaml"
    where.write_text(f"trainer:\n  default_root_dir: {bench}/ce\n")
    args = [a for a in fmnist_args(fmnist_root, "unused") if a not in ("--trainer.default_root_dir", "unused")]
    cmd = [sys.executable, "-m", "otcls.cli", "fit", *args, "--config", str(where), *QUICK,
           "--test_after_fit", "true", "--data.init_args.max_test_per_class", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert sorted(os.listdir(bench)) == ["ce-s0", "ce-s0-v1"]
    for folder in ("ce-s0", "ce-s0-v1"):
        assert os.path.isfile(bench / folder / "test_results.json")
        assert json.loads((bench / folder / "run.json").read_text())["name"] == "ce-s0"


def test_last_ckpt_is_the_last_epoch_when_the_best_is_not(fmnist_root, tmp_path, monkeypatch):
    from otcls.tasks.image import ImageClassifier

    # monitor "epoch" in mode min: epoch 0 is the best, epoch 1 never is (a metric that only gets worse)
    monkeypatch.setattr(ImageClassifier, "checkpoint_monitor", ("epoch", "min"))
    run_dir = tmp_path / "run"
    run(["fit", *fmnist_args(fmnist_root, str(run_dir)), "--trainer.max_epochs", "2", "--trainer.limit_train_batches",
         "1", "--trainer.limit_val_batches", "1", "--test_after_fit", "false"])
    ckpts = run_dir / "checkpoints"
    best = [f for f in os.listdir(ckpts) if f.startswith("best-")]
    assert len(best) == 1 and best[0].startswith("best-epoch=0-")
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1


def test_bad_checkpoint_files_are_named(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.ckpt' is empty"):
        check_checkpoint_file(str(empty))
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert zipfile.is_zipfile(good)
    with pytest.raises(ValueError, match=r"cut\.ckpt' is truncated"):
        check_checkpoint_file(str(cut))
    with pytest.raises(ValueError, match="does not exist"):
        check_checkpoint_file(str(tmp_path / "missing.ckpt"))


@pytest.mark.parametrize("extra,message", [
    (["--data.init_args.n_max", "0"], "n_max must be an integer >= 1"),
    (["--trainer.max_epochs", "-1"], "max_epochs must be an integer >= 1"),
    (["--data.init_args.imbalance_factor", "0.5"], "imbalance_factor must be a number >= 1"),
])
def test_bad_ranges_stop_before_training(fmnist_root, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        run(["fit", *fmnist_args(fmnist_root, str(tmp_path / "r")), *QUICK, *extra])
    assert not os.path.exists(tmp_path / "r" / "checkpoints")


def test_bad_paths_stop_with_their_name(fmnist_root, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="data root '.*afile' is a file"):
        run(["fit", *fmnist_args(str(afile), str(tmp_path / "r")), *QUICK])
    with pytest.raises(ValueError, match="cannot create the run folder"):
        run(["fit", *fmnist_args(fmnist_root, str(afile / "run")), *QUICK])


def test_cli_checkpoints_of_another_class_count_or_broken(fmnist_root, tmp_path):
    """One subprocess per case would cost seconds each: the checkpoint cases run in-process, as `otcls test` does."""
    run_dir = tmp_path / "fit"
    run(["fit", *fmnist_args(fmnist_root, str(run_dir)), *QUICK, "--test_after_fit", "false"])
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["hyper_parameters"]["num_classes"] = 7
    state["hyper_parameters"]["class_counts"] = [5] * 7
    other = tmp_path / "seven.ckpt"
    torch.save(state, other)
    with pytest.raises(ValueError, match="has 7 classes but FashionMNISTLTDataModule has 10"):
        run(["test", *fmnist_args(fmnist_root, str(tmp_path / "t")), "--ckpt_path", str(other)])
    assert not os.path.exists(str(other)[:-5] + ".test_results.json")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", "test", *fmnist_args(fmnist_root, str(tmp_path / "t")),
                           "--ckpt_path", str(cut)], env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "cut.ckpt' is truncated" in proc.stderr, proc.stderr[-2000:]


def test_custom_npz_with_out_of_range_test_labels_stops_at_setup(tmp_path):
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(CFG), "examples", "custom_data"))
    try:
        from npz_datamodule import NpzDataModule
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.npz"
    np.savez(path, train_images=rng.integers(0, 255, (12, 4, 4), dtype=np.uint8), train_labels=np.repeat([0, 1, 2], 4),
             test_a_images=rng.integers(0, 255, (3, 4, 4), dtype=np.uint8), test_a_labels=np.array([0, 1, 5]))
    with pytest.raises(ValueError, match=r"test_a_labels range over \[0, 5\] but the training labels define classes 0 … 2"):
        NpzDataModule(str(path)).setup("fit")


def test_report_labels_runs_by_their_identity(tmp_path):
    from otcls.reporting.report import run_label

    for folder, name in (("a/ldam_drw-s0", "ldam_drw-s0"), ("a/ldam_drw-s0-v1", "ldam_drw-s0"),
                         ("sweep/ldam_drw/seed1", "ldam_drw-s1")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "run.json").write_text(json.dumps({"name": name}))
    assert [run_label(str(tmp_path / f)) for f in ("a/ldam_drw-s0", "a/ldam_drw-s0-v1", "sweep/ldam_drw/seed1")] == \
        ["ldam_drw-s0", "ldam_drw-s0-v1", "ldam_drw-s1"]
    (tmp_path / "old" / "ce").mkdir(parents=True)  # a run folder from before run.json: its folder name
    assert run_label(str(tmp_path / "old" / "ce")) == "ce"


@pytest.mark.parametrize("text,message", [("{trunc", "is not valid JSON"), ('{"other": 1}', "has no 'results' mapping")])
def test_broken_test_results_are_named(tmp_path, text, message):
    from otcls.reporting.results import flat_test_metrics

    (tmp_path / "test_results.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        flat_test_metrics(str(tmp_path))
