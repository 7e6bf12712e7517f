"""ContrastiveTask end to end on a tiny Fashion-MNIST-LT (fast_dev_run), the probe and the augmentation."""
import json
import os

import lightning as L
import pytest
import torch

from otcls.heads import TransportHead
from otcls.tasks.contrastive import ContrastiveTask
from otcls.tasks.contrastive_augment import TwoViewAugment
from otcls.tasks.linear_probe import Standardizer, fit_probe

FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
needs_fmnist = pytest.mark.skipif(not os.path.isfile(FMNIST) and bool(os.environ.get("OTCLS_ALLOW_MISSING_DATA")),
                                  reason="OTCLS_ALLOW_MISSING_DATA is set and dataset-fashion-mnist is not installed")


def _datamodule(tmp_path):
    from otcls.data import FashionMNISTLTDataModule

    return FashionMNISTLTDataModule(root=str(tmp_path / "fmnist"), imbalance_factor=10, n_max=40, batch_size=32,
                                    eval_batch_size=64, max_test_per_class=6, augment="none", val_fraction=0.2)


def _task(loss, **kw):
    return ContrastiveTask(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [4, 8]},
                           loss=loss, proj_dim=8, probe_epochs=2, lr=0.01, **kw)


@needs_fmnist
@pytest.mark.parametrize("loss,loss_kwargs", [
    ("nt_xent", {"temperature": 0.5}),
    ("reot_contrastive", {"temperature": 0.1, "prior": "frequency", "coupling": "balanced", "sinkhorn_iters": 5}),
])
def test_fast_dev_run_fit_and_probe(tmp_path, loss, loss_kwargs):
    torch.manual_seed(0)
    dm = _datamodule(tmp_path)
    task = _task(loss, loss_kwargs=loss_kwargs, inference_modes=("softmax", "reot", "dbot"))
    from otcls.callbacks.prior_schedule import PriorSchedule

    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", default_root_dir=str(tmp_path / "run"),
                        enable_progress_bar=False, logger=False,
                        callbacks=[PriorSchedule(kind="constant", value=0.25)])
    before = [p.detach().clone() for p in task.backbone.parameters()]
    trainer.fit(task, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.backbone.parameters()))
    assert task.head.lam == 0.25  # λ(t) reaches the contrastive loss through task.head
    assert task.probe.num_classes == 10
    frozen = [p.detach().clone() for p in task.backbone.parameters()]
    trainer.test(task, datamodule=dm)
    # the probe must not touch the encoder
    assert all(torch.equal(a, b) for a, b in zip(frozen, task.backbone.parameters()))
    with open(tmp_path / "run" / "test_results.json") as fh:
        res = json.load(fh)["results"]
    assert set(res) == {"balanced", "lt", "reverse_lt"} and set(res["balanced"]) == {"softmax", "reot", "dbot"}
    for r in res["balanced"].values():
        assert 0.0 <= r["top1"] <= 100.0 and r["n"] > 0
    assert (tmp_path / "run" / "test_results.md").read_text().startswith("# Linear probe")


def test_linear_probe_learns_separable_features():
    """On linearly separable Gaussian blobs the probe reaches (near) perfect accuracy, as sklearn's does."""
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    y = torch.arange(3).repeat_interleave(40)
    h = centers[y] + torch.randn(120, 3, generator=g) + 10.0  # offset: the standardiser must remove it
    std = Standardizer(3).fit(h)
    head = TransportHead(3, 3, loss="ce")
    losses = fit_probe(head, std(h), y, epochs=40, lr=0.05, batch_size=32)
    assert losses[-1] < losses[0]
    ours = (head(std(h)).argmax(1) == y).float().mean().item()
    ref = LogisticRegression(max_iter=1000).fit(h.numpy(), y.numpy()).score(h.numpy(), y.numpy())
    assert ours >= ref - 0.02 and ours > 0.95


def test_probe_input_errors():
    head = TransportHead(3, 2, loss="ce")
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        fit_probe(head, torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="shape"):
        Standardizer(3).fit(torch.zeros(4, 5))


def test_two_view_augment_shapes_and_randomness():
    aug = TwoViewAugment()
    x = torch.randn(8, 3, 16, 16)
    v1, v2 = aug(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape == v2.shape and not torch.allclose(v1, v2)
    # identity settings reproduce the input (full-size crop, no flip, no jitter)
    ident = TwoViewAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)
    assert torch.allclose(ident.view(x), x, atol=1e-5)
    flip = TwoViewAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, gray_p=0.0)
    assert torch.allclose(flip.view(x), x.flip(-1), atol=1e-5)
    with pytest.raises(ValueError, match="scale"):
        TwoViewAugment(scale=(0.0, 1.0))


def test_task_bad_config():
    with pytest.raises(ValueError, match="loss must be one of"):
        ContrastiveTask(loss="ce")
    with pytest.raises(ValueError, match="unknown option"):
        ContrastiveTask(loss="nt_xent", loss_kwargs={"prior": "class"}, num_classes=3)


CONTRASTIVE_METHODS = {  # written by hand: what each method file must select, in every benchmark
    "simclr": ("nt_xent", {"temperature": 0.5}),
    "supcon": ("supcon", {"temperature": 0.1}),
    "reot": ("reot_contrastive", {"temperature": 0.1, "prior": "frequency", "target": "class", "coupling": "semi"}),
}


@pytest.mark.parametrize("bench", ["fmnist_lt", "cifar10_lt", "cifar100_lt"])
@pytest.mark.parametrize("method", sorted(CONTRASTIVE_METHODS))
def test_configs_instantiate(tmp_path, monkeypatch, bench, method):
    """Every shipped config parses and builds the task, its loss and the DataModule (nothing is trained)."""
    from lightning.pytorch.cli import LightningCLI

    class ParseOnly(LightningCLI):  # otcls's CLI options, without running a sub-command
        def add_arguments_to_parser(self, parser):
            parser.add_argument("--test_after_fit", type=bool, default=False)

    monkeypatch.setattr("sys.argv", ["otcls"])
    cli = ParseOnly(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    auto_configure_optimizers=False, run=False, save_config_callback=None,
                    args=["--config", f"configs/contrastive/{bench}/base.yaml",
                          "--config", f"configs/contrastive/{bench}/{method}.yaml",
                          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"])
    loss, loss_kwargs = CONTRASTIVE_METHODS[method]
    assert isinstance(cli.model, ContrastiveTask) and cli.model.hparams.loss == loss
    assert cli.model.hparams.loss_kwargs == loss_kwargs
    cli.model._build(cli.datamodule.num_classes, cli.datamodule.class_counts)  # what setup() does
    built = cli.model.head  # the loss object the task trains with carries those options
    assert built.temperature == loss_kwargs["temperature"]
    for key in ("prior", "target", "coupling"):
        if key in loss_kwargs:
            assert getattr(built, key) == loss_kwargs[key]
    assert cli.datamodule.num_classes == (100 if bench == "cifar100_lt" else 10)
    if method == "reot":
        from otcls.callbacks.prior_schedule import PriorSchedule

        assert any(isinstance(c, PriorSchedule) for c in cli.trainer.callbacks)


def test_forward_before_setup_says_what_to_do():
    task = ContrastiveTask(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [4]}, loss="nt_xent")
    with pytest.raises(ValueError, match="probe is not built"):
        task(torch.zeros(2, 1, 8, 8))
