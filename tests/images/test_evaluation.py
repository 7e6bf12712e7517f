"""Accuracy by class / shot group, tables and the LR schedule, against hand-computed values."""
import math

import pytest
import torch

from otcls.models import MODELS
from otcls.reporting.results import aggregate
from otcls.reporting.tables import markdown_table
from otcls.tasks.evaluation import evaluate_predictions
from otcls.tasks.common import warmup_cosine


def test_evaluate_hand_checked():
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 0, 2])
    r = evaluate_predictions(preds, targets, 4, {"many": [0], "medium": [1, 2], "few": [3]})
    assert r["top1"] == pytest.approx(100 * 4 / 6)
    assert r["many"] == pytest.approx(100 * 2 / 3)
    assert r["medium"] == pytest.approx(100 * 2 / 3)  # 1/2 of class 1 + 1/1 of class 2 → 2 of 3 samples
    assert math.isnan(r["few"])  # no test sample of class 3: empty, not 0 %
    assert r["per_class"][:3] == pytest.approx([100 * 2 / 3, 50.0, 100.0]) and math.isnan(r["per_class"][3])
    assert r["confusion"][0] == [2, 1, 0, 0] and r["confusion"][1] == [1, 1, 0, 0]


def test_evaluate_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="equal length"):
        evaluate_predictions(torch.zeros(3), torch.zeros(4), 2, {})


def test_table_shows_empty_as_dash():
    md = markdown_table(["a", "b"], [["x", float("nan")], ["y", 1.234]])
    assert "| x | — |" in md and "| y | 1.23 |" in md


def test_aggregate_mean_std_matches_torch():
    runs = {"0": {"k": 1.0}, "1": {"k": 2.0}, "2": {"k": 4.0, "z": 3.0}}
    agg = aggregate(runs)
    v = torch.tensor([1.0, 2.0, 4.0])
    assert agg["k"]["mean"] == pytest.approx(float(v.mean())) and agg["k"]["std"] == pytest.approx(float(v.std()))
    assert agg["z"] == {"mean": 3.0, "std": 0.0, "n": 1}


def test_warmup_cosine():
    assert warmup_cosine(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)


def test_backbones():
    r32 = MODELS.build("resnet32")
    assert r32.out_features == 64 and r32(torch.zeros(2, 3, 32, 32)).shape == (2, 64)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in r32.modules())
    assert n_convs == 31  # 31 3×3 conv layers + the classifier = 32 weighted layers
    r10 = MODELS.build("resnet10")
    assert r10(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert MODELS.build("small_cnn", in_channels=1)(torch.zeros(2, 1, 28, 28)).shape == (2, 128)
    with pytest.raises(ValueError, match="6n\\+2"):
        MODELS.build("cifar_resnet", depth=30)


def test_checkpoint_roundtrip_rebuilds_head(tmp_path):
    import lightning as L

    from otcls.tasks import ImageClassifier

    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [4]},
                            loss="balanced_softmax", num_classes=3, class_counts=[30, 10, 2])
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path = str(tmp_path / "m.ckpt")
    trainer.save_checkpoint(path)
    loaded = ImageClassifier.load_from_checkpoint(path)
    x = torch.randn(2, 1, 8, 8)
    model.eval(), loaded.eval()
    assert torch.allclose(model(x), loaded(x)) and loaded.features(x).shape == (2, 4)
    assert loaded.hparams.class_counts == [30, 10, 2]
