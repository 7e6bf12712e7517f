"""``otcls fit/test`` through LightningCLI: every config family, bad keys, resume after a kill, DDP on 2 CPU processes."""
from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from otcls.lightning_cli import run
from otcls.tasks.image import INFERENCE_MODES, TEST_PRIORS, inference_settings

from .config_expectations import IMAGE_METHODS, image_method, selected
from .images.conftest import write_cifar, write_imagenet_lt  # tiny official-format data writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs")
FMNIST_METHODS = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(CFG, "fmnist_lt")))
SETTINGS = [name for name, *_ in inference_settings(INFERENCE_MODES, TEST_PRIORS, 256, True)]
os.environ["WANDB_MODE"] = "disabled"
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def fmnist_args(root: str, run_dir: str, method: str = "ce") -> list:
    return ["--config", f"{CFG}/base/fmnist.yaml", "--config", f"{CFG}/fmnist_lt/{method}.yaml",
            "--data.init_args.root", root, "--data.init_args.n_max", "60", "--data.init_args.val_per_class", "6", "--data.init_args.imbalance_factor", "10",
            "--data.init_args.max_test_per_class", "null", "--data.init_args.batch_size", "32",
            "--model.init_args.backbone_kwargs", "{in_channels: 1, channels: [8, 16]}",
            "--trainer.default_root_dir", run_dir, "--trainer.enable_progress_bar", "false",
            "--model.init_args.warmup_steps", "2"]


def check_results(run_dir: str, method: str, settings=SETTINGS, bench: str = "fmnist_lt") -> dict:
    """The run trained the loss and options of ``configs/<bench>/<method>.yaml`` and tested every setting."""
    with open(os.path.join(run_dir, "test_results.json")) as fh:
        saved = json.load(fh)
    assert selected(saved) == image_method(bench, method)
    res = saved["results"]
    assert list(res) == ["balanced", "lt", "reverse_lt"]
    for variant in res.values():
        assert list(variant) == [*settings, "em_prior"]
        for name in settings:
            assert 0.0 <= variant[name]["top1"] <= 100.0
        em = variant["em_prior"]
        assert em["l1"] == pytest.approx(sum(abs(a - b) for a, b in zip(em["estimated"], em["known"])))
    return res


@pytest.fixture(scope="module")
def teacher_ckpt(fmnist_root, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("teacher"))
    run(["fit", *fmnist_args(fmnist_root, run_dir), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
         "--trainer.limit_val_batches", "1", "--test_after_fit", "false"])
    return os.path.join(run_dir, "checkpoints", "last.ckpt")


@pytest.mark.parametrize("method", FMNIST_METHODS)
def test_fast_dev_run_every_fmnist_method(method, fmnist_root, teacher_ckpt, tmp_path):
    extra = {"reot_teacher": ["--model.init_args.teacher_checkpoint", teacher_ckpt],
             "dbot": ["--model.init_args.init_checkpoint", teacher_ckpt]}.get(method, [])
    run(["fit", *fmnist_args(fmnist_root, str(tmp_path), method), "--trainer.fast_dev_run", "true",
         "--test_after_fit", "true", *extra])
    check_results(str(tmp_path), method)


@pytest.mark.parametrize("family", ["cifar10_lt", "cifar100_lt", "imagenet_lt"])
def test_fast_dev_run_config_families(family, tmp_path):
    if family == "imagenet_lt":
        imagenet_lt_root = write_imagenet_lt(str(tmp_path))
        data = ["--data.init_args.root", imagenet_lt_root, "--data.init_args.list_dir", imagenet_lt_root,
                "--data.init_args.num_classes", "4", "--data.init_args.image_size", "32",
                "--trainer.precision", "32-true"]
        base = "imagenet"
    else:
        ncls = 10 if family == "cifar10_lt" else 100
        write_cifar(str(tmp_path / "data"), ncls, 12 if ncls == 10 else 3, 2)
        data = ["--data.init_args.root", str(tmp_path / "data"), "--data.init_args.download", "false",
                "--data.init_args.imbalance_factor", "3", "--data.init_args.val_per_class", "1"]
        base = "cifar"
    run(["fit", "--config", f"{CFG}/base/{base}.yaml", "--config", f"{CFG}/{family}/data.yaml",
         "--config", f"{CFG}/{family}/reot_ratio.yaml", *data, "--data.init_args.batch_size", "8",
         "--data.init_args.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.fast_dev_run", "true",
         "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false"])
    check_results(str(tmp_path / "run"), "reot_ratio", bench=family)


def test_bad_config_key_fails_clearly(fmnist_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["fit", *fmnist_args(fmnist_root, str(tmp_path)), "--model.init_args.lerning_rate", "0.1"])
    assert exc.value.code != 0
    assert "lerning_rate" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(SystemExit):
        run(["fit", *fmnist_args(fmnist_root, str(tmp_path)), "--config", str(bad)])
    assert "max_epoch" in capsys.readouterr().err


def test_missing_data_says_how_to_get_it(tmp_path):
    args = fmnist_args(str(tmp_path / "empty"), str(tmp_path / "run"))
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        run(["fit", *args, "--data.init_args.system_dir", str(tmp_path / "no_debian_copy"), "--trainer.fast_dev_run", "true"])


def _lambda_by_epoch(run_dir: str) -> dict:
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "logs", "version_*", "metrics.csv"))):
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row.get("train/lambda"):
                    out[int(row["epoch"])] = float(row["train/lambda"])
    return out


def test_resume_after_kill_continues_lambda_schedule(fmnist_root, tmp_path):
    run_dir = str(tmp_path / "run")
    killer = tmp_path / "kill.yaml"
    schedule = ("trainer:\n  callbacks:\n    - class_path: otcls.callbacks.prior_schedule.PriorSchedule\n"
                "      init_args: {kind: linear, until: 3}\n")
    killer.write_text(schedule + "    - class_path: _killer.KillAtEpoch\n      init_args: {epoch: 2}\n")
    same = tmp_path / "schedule.yaml"  # the resumed run: same schedule, no killer, λ recorded at train start
    started = tmp_path / "lam_at_start.json"
    same.write_text(schedule + f"    - class_path: tests.images._killer.RecordLambdaAtTrainStart\n"
                               f"      init_args: {{path: {started}}}\n")
    args = [*fmnist_args(fmnist_root, run_dir, "reot_ratio"), "--trainer.max_epochs", "4",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--test_after_fit", "false"]
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "tests", "images"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", "fit", *args, "--config", str(killer)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILLed at the start of epoch 2
    assert sorted(_lambda_by_epoch(run_dir)) == [0, 1]
    run(["fit", *args, "--config", str(same), "--ckpt_path", "last"])
    # the checkpoint's λ (1/3, set at epoch 1) is back in the head before epoch 2 recomputes it; the config says 0
    assert json.loads(started.read_text()) == {"lam": pytest.approx(1 / 3), "epoch": 2}
    lam = _lambda_by_epoch(run_dir)
    assert sorted(lam) == [0, 1, 2, 3]
    with open(os.path.join(run_dir, "logs", "version_1", "metrics.csv")) as fh:  # the resumed process
        assert sorted({int(r["epoch"]) for r in csv.DictReader(fh) if r.get("train/lambda")}) == [2, 3]
    assert [lam[e] for e in range(4)] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # λ linear 0 → 1 at epoch 3, continued


def test_ddp_two_cpu_processes(fmnist_root, tmp_path):
    run_dir = str(tmp_path / "ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", "fit", *fmnist_args(fmnist_root, run_dir),
                           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
                           "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--test_after_fit", "true"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sync_dist" not in proc.stderr  # epoch-level logs are synchronised: no Lightning warning per metric
    res = check_results(run_dir, "ce")
    # logits gathered from both ranks, sampler padding removed: every test image counted exactly once
    assert res["balanced"]["softmax"]["n"] == 120


def test_default_loggers_csv_always_wandb_offline(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from otcls.lightning_cli import default_loggers

    monkeypatch.delenv("WANDB_MODE", raising=False)
    csv_logger, wandb_logger = default_loggers(str(tmp_path))
    assert isinstance(csv_logger, CSVLogger) and isinstance(wandb_logger, WandbLogger)
    assert wandb_logger._offline and wandb_logger.save_dir == str(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert not default_loggers(str(tmp_path))[1]._offline
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert [type(lg) for lg in default_loggers(str(tmp_path))] == [CSVLogger]


@pytest.mark.parametrize("bench,base", [("fmnist_lt", "fmnist"), ("cifar10_lt", "cifar"), ("cifar100_lt", "cifar"),
                                        ("imagenet_lt", "imagenet")])
def test_every_benchmark_method_config_selects_its_loss(bench, base, capsys):
    import yaml

    methods = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(CFG, bench)) if f != "data.yaml")
    assert methods == sorted(IMAGE_METHODS)
    data = [] if bench == "fmnist_lt" else ["--config", f"{CFG}/{bench}/data.yaml"]
    for m in methods:
        with pytest.raises(SystemExit) as exc:
            run(["fit", "--config", f"{CFG}/base/{base}.yaml", *data, "--config", f"{CFG}/{bench}/{m}.yaml",
                 "--print_config"])
        assert exc.value.code in (0, None), m
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["trainer"]["default_root_dir"] == f"runs/{bench}/{m}"
        assert selected(printed["model"]["init_args"]) == image_method(bench, m), m


def test_wandb_sweep_files_point_at_existing_configs():
    import yaml

    for name in ("wandb_fmnist_lt.yaml", "wandb_cifar10_lt.yaml"):
        with open(os.path.join(CFG, "sweeps", name)) as fh:
            sweep_cfg = yaml.safe_load(fh)
        assert sweep_cfg["command"][:2] == ["otcls", "fit"]
        for path in sweep_cfg["parameters"]["config"]["values"]:
            assert os.path.isfile(os.path.join(REPO, path)), path
        assert sweep_cfg["parameters"]["seed_everything"]["values"] == [0, 1, 2]


def test_mixed_precision_falls_back_on_cpu(capsys):
    from otcls.lightning_cli import cpu_precision_fallback

    assert cpu_precision_fallback("bf16-mixed", "cpu") == "32-true"
    assert "running in 32-true on the CPU" in capsys.readouterr().err
    assert cpu_precision_fallback("32-true", "cpu") is None
    assert cpu_precision_fallback("bf16-mixed", "gpu") is None  # an explicit GPU run keeps bf16


def test_run_identity_from_method_and_seed(fmnist_root, tmp_path, capsys):
    """Without --trainer.default_root_dir a run's folder is <benchmark>/<method>-s<seed> (the method: the config's
    folder name or --run_name); a second fresh fit gets -v1, and --ckpt_path last only resumes the run it belongs to."""
    bench = tmp_path / "bench"
    where = tmp_path / "where.yaml"  # the benchmark folder comes from a config file, as in the shipped configs
    where.write_text(f"trainer:\n  default_root_dir: {bench}/ce\n")
    args = [a for a in fmnist_args(fmnist_root, "unused") if a not in ("--trainer.default_root_dir", "unused")]
    args += ["--config", str(where), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
             "--trainer.limit_val_batches", "1", "--test_after_fit", "false"]
    run(["fit", *args])
    run(["fit", *args])
    run(["fit", *args, "--model.init_args.loss", "focal", "--run_name", "focal"])
    assert sorted(os.listdir(bench)) == ["ce-s0", "ce-s0-v1", "focal-s0"]
    assert "is taken by another run; this run goes to" in capsys.readouterr().err
    with pytest.raises(ValueError, match="trained with loss 'ce', this run uses 'focal'"):
        run(["fit", *args, "--model.init_args.loss", "focal", "--ckpt_path", str(bench / "ce-s0" / "checkpoints" / "last.ckpt")])
    with pytest.raises(ValueError, match="nothing to resume"):
        run(["fit", *args, "--seed_everything", "7", "--ckpt_path", "last"])
    run(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])  # resumes ce-s0 itself
    assert f"resuming {bench}/ce-s0/checkpoints/last.ckpt" in capsys.readouterr().err
    assert sorted(os.listdir(bench)) == ["ce-s0", "ce-s0-v1", "focal-s0"]


def test_checkpoint_pattern_follows_the_seed(tmp_path):
    from otcls.lightning_cli import resolve_checkpoint_pattern

    old = tmp_path / "ce-s1" / "checkpoints" / "best-epoch=3.ckpt"
    new = tmp_path / "ce-s1" / "abc123" / "checkpoints" / "best-epoch=5.ckpt"  # a W&B agent's run folder
    for i, path in enumerate((old, new)):
        path.parent.mkdir(parents=True)
        path.write_text("x")
        os.utime(path, (1000 + i, 1000 + i))
    assert resolve_checkpoint_pattern(f"{tmp_path}/ce-s{{seed}}/**/best-*.ckpt", 1) == str(new)
    assert resolve_checkpoint_pattern(f"{tmp_path}/plain.ckpt", 1) == f"{tmp_path}/plain.ckpt"
    with pytest.raises(ValueError, match="train the run it comes from first"):
        resolve_checkpoint_pattern(f"{tmp_path}/ce-s{{seed}}/**/best-*.ckpt", 2)


def test_command_line_run_has_no_args_warning():
    proc = subprocess.run([sys.executable, "-m", "otcls.cli", "fit", "--config", f"{CFG}/base/fmnist.yaml",
                           "--config", f"{CFG}/fmnist_lt/ce.yaml", "--print_config"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "args parameter" not in proc.stderr and "loss: ce" in proc.stdout


def test_unknown_loss_fails_at_parse_time_with_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # no data at this root: parsing must stop before the data is read
        run(["fit", *fmnist_args(str(tmp_path / "no_data"), str(tmp_path / "run")), "--model.loss", "focall"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown loss 'focall'; choose one of: balanced_softmax, cb_ce, cb_focal, ce, dbot, focal" in err
    assert not os.path.exists(tmp_path / "run")


def test_model_help_takes_a_short_class_name(capsys):
    with pytest.raises(SystemExit) as exc:
        run(["fit", "--model.help", "ImageClassifier"])
    assert exc.value.code == 0
    assert "--model.loss LOSS" in capsys.readouterr().out


def test_test_and_predict_write_beside_the_checkpoint(fmnist_root, tmp_path):
    """``otcls test`` leaves the fit's test_results.json alone and writes <ckpt>.test_results.json; ``otcls predict``
    writes <ckpt>.predictions.csv whose columns equal the checkpoint's own predictions."""
    import torch

    from otcls.data import FashionMNISTLTDataModule
    from otcls.tasks import ImageClassifier

    run_dir = tmp_path / "run"
    args = fmnist_args(fmnist_root, str(run_dir))
    run(["fit", *args, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--test_after_fit", "true"])
    fit_results = (run_dir / "test_results.json").read_bytes() + b" "  # marked: a rewrite would drop the mark
    (run_dir / "test_results.json").write_bytes(fit_results)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    run(["test", *args, "--ckpt_path", str(ckpt)])
    assert (run_dir / "test_results.json").read_bytes() == fit_results
    tested = json.loads((run_dir / "checkpoints" / "last.test_results.json").read_text())
    assert list(tested["results"]) == ["balanced", "lt", "reverse_lt"]

    run(["predict", *args, "--ckpt_path", str(ckpt)])
    with open(run_dir / "checkpoints" / "last.predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    columns = ["index", "label", "softmax", "tau_norm", "class_bias:estimated", "reot:estimated", "dbot:estimated",
               "reot_stream:estimated", "dbot_stream:estimated"]
    assert list(rows[0]) == columns
    model = ImageClassifier.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
    dm = FashionMNISTLTDataModule(root=fmnist_root, n_max=60, val_per_class=6, imbalance_factor=10, seed=0,
                                  augment="none")
    dm.setup()
    x, y, index = dm.split("test/balanced").__getitems__(list(range(len(dm.split("test/balanced")))))
    with torch.no_grad():
        logits = model(x)
    assert [int(r["index"]) for r in rows] == index.tolist()
    assert [int(r["label"]) for r in rows] == y.tolist()
    assert [int(r["softmax"]) for r in rows] == logits.argmax(-1).tolist()
    dbot = model.head.predict(logits, mode="dbot", test_prior="estimated", eps=1.0, delta=0.1, batch_size=256, seed=0)
    assert [int(r["dbot:estimated"]) for r in rows] == dbot.tolist()
