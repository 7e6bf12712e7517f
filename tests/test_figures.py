"""experiments/figures: Fig. 2 sharpness with and without the RE-OT prior, and `make figures`' orchestration."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "figures"))
import reot_figures  # noqa: E402
import run_all  # noqa: E402
import tsne_features  # noqa: E402

SMALL = ["--fig2-side", "12"]  # Fig. 2 in about a second


def save_checkpoint(path: Path) -> Path:
    """An untrained small-CNN ImageClassifier saved by a Lightning Trainer, as `make demo` saves them."""
    import lightning as L

    from otcls.tasks import ImageClassifier

    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [8, 16]},
                            loss="ce", num_classes=10, class_counts=[100, 60, 36, 22, 13, 8, 5, 3, 2, 1])
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(path))
    return path


def test_deblurring_prior_keeps_the_barycenter_sharp():
    img = reot_figures.load_photo("flower.jpg", side=16)
    assert img.shape == (16, 16) and 0.0 <= img.min() < img.max() <= 1.0
    rows = reot_figures.barycenter_rows(img, 0.01, (0.5,), rows=("no prior", "deblurring prior"), progress=False)
    blurred = reot_figures.sharpness(rows["no prior"][0]["barycenter"], img.shape)
    prior = reot_figures.sharpness(rows["deblurring prior"][0]["barycenter"], img.shape)
    assert prior["gradient_energy"] > 2.0 * blurred["gradient_energy"]
    assert prior["entropy"] < blurred["entropy"]
    for entries in rows.values():
        bar = entries[0]["barycenter"]
        assert torch.isclose(bar.sum(), torch.tensor(1.0, dtype=bar.dtype), atol=1e-2)


def test_sharpness_measures():
    flat = torch.ones(16)
    assert reot_figures.sharpness(flat, (4, 4)) == {"gradient_energy": 0.0, "entropy": pytest.approx(np.log(16))}
    checker = torch.tensor(np.indices((4, 4)).sum(0) % 2, dtype=torch.float64).flatten() + 1.0
    assert reot_figures.sharpness(checker, (4, 4))["gradient_energy"] == pytest.approx(2.0)


def test_demo_checkpoint_prefers_best_then_last(tmp_path):
    folder = tmp_path / "reot_ratio" / "seed0" / "checkpoints"
    folder.mkdir(parents=True)
    with pytest.raises(tsne_features.MissingInput, match="make demo"):
        tsne_features.demo_checkpoint(tmp_path)
    (folder / "last.ckpt").touch()
    assert tsne_features.demo_checkpoint(tmp_path) == folder / "last.ckpt"
    (folder / "best-epoch=3-step=40.ckpt").touch()
    assert tsne_features.demo_checkpoint(tmp_path).name == "best-epoch=3-step=40.ckpt"


def test_missing_checkpoint_is_reported_and_the_other_figures_are_made(tmp_path, fmnist_root, capsys):
    rc = run_all.main(["--out", str(tmp_path / "figs"), "--runs", str(tmp_path / "no_runs"),
                       "--fmnist-root", fmnist_root, *SMALL])
    out = capsys.readouterr()
    assert rc == 1
    assert "make demo" in out.err and "missing input" in out.out and "3 of 4 figures made" in out.out
    made = {p.name for p in (tmp_path / "figs").iterdir()}
    assert {"reot_fig1_plans.png", "reot_fig2_barycenters.png", "reot_fig2_sharpness.json",
            "proximal_point.png", "proximal_point.md"} <= made
    assert "tsne_features.png" not in made
    report = json.loads((tmp_path / "figs" / "reot_fig2_sharpness.json").read_text())
    assert set(report["rows"]) == set(reot_figures.ROWS)
    assert all(len(entries) == len(report["lams"]) and {"gradient_energy", "entropy"} <= set(entries[0])
               for entries in report["rows"].values())


def test_failed_figure_gives_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "broken.ckpt"
    bad.write_text("not a checkpoint")
    rc = run_all.main(["--only", "tsne", "--out", str(tmp_path), "--checkpoint", str(bad)])
    assert rc == 1 and "failed" in capsys.readouterr().out


def test_tsne_figure_from_the_demo_checkpoint(tmp_path, fmnist_root, capsys):
    runs = tmp_path / "runs"
    save_checkpoint(runs / "reot_ratio" / "seed0" / "checkpoints" / "best-epoch=0-step=0.ckpt")
    rc = run_all.main(["--only", "tsne", "--out", str(tmp_path / "figs"), "--runs", str(runs),
                       "--fmnist-root", fmnist_root, "--tsne-n", "100"])
    assert rc == 0, capsys.readouterr()
    assert (tmp_path / "figs" / "tsne_features.png").stat().st_size > 10_000


def test_make_figures_after_a_tiny_sweep_writes_every_png(tmp_path, fmnist_root, monkeypatch, capsys):
    """What `make demo` then `make figures` do, in miniature: a real one-epoch sweep of the RE-OT config, then
    every figure from its runs folder."""
    from otcls.sweeps import cli as sweep

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "demo"
    assert sweep.main(["--base", f"{repo}/configs/base/fmnist.yaml", "--methods",
                       f"{repo}/configs/fmnist_lt/reot_ratio.yaml", "--seeds", "0", "--out", str(out), "--",
                       "--data.init_args.root", fmnist_root, "--data.init_args.n_max", "60",
                       "--data.init_args.val_per_class", "6", "--data.init_args.imbalance_factor", "10",
                       "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]) == 0
    figs = tmp_path / "figs"
    rc = run_all.main(["--out", str(figs), "--runs", str(out / "runs"), "--fmnist-root", fmnist_root,
                       "--tsne-n", "100", *SMALL])
    assert rc == 0, capsys.readouterr().out
    assert sorted(p.name for p in figs.glob("*.png")) == ["proximal_point.png", "reot_fig1_plans.png",
                                                         "reot_fig2_barycenters.png", "tsne_features.png"]
    assert json.loads((figs / "reot_fig2_sharpness.json").read_text())
