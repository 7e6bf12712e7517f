"""ImageClassifier's test run, wired end to end: with fixed logits, every number in ``test_results.json`` equals
``evaluate_predictions`` of ``head.predict(logits, mode, datamodule.test_prior(variant))`` for every test-prior
variant and setting, with shot groups written out by hand from the class counts."""
from __future__ import annotations

import json
import math
import os

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from otcls.tasks import ImageClassifier
from otcls.tasks.evaluation import evaluate_predictions

CLASS_COUNTS = [150, 60, 30, 10]
# by hand, thresholds 100 / 20: many > 100 images, few < 20, medium between
GROUPS = {"many": [0], "medium": [1, 2], "few": [3]}
TEST_COUNTS = {"balanced": [20, 20, 20, 20], "lt": [40, 20, 10, 5], "reverse_lt": [5, 10, 20, 40]}
OT_BATCH = 32
INFERENCE_KWARGS = {"reot": {"eps": 0.5}, "dbot": {"eps": 0.5, "delta": 0.1}, "class_bias": {"tau": 0.8}}


class LogitsAsInput(ImageClassifier):
    """The test "images" are the logits themselves, so the test run sees exactly the logits we chose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def variant_logits(variant: str) -> tuple:
    """Weakly informative logits (true class + 1.2, N(0, 1) noise) of a test set with ``TEST_COUNTS[variant]``."""
    g = torch.Generator().manual_seed(len(variant))
    y = torch.repeat_interleave(torch.arange(4), torch.tensor(TEST_COUNTS[variant]))
    y = y[torch.randperm(len(y), generator=g)]
    logits = 1.2 * torch.nn.functional.one_hot(y, 4).float() + torch.randn(len(y), 4, generator=g)
    return logits, y


class FixedLogitsData(L.LightningDataModule):
    """A user-style DataModule: num_classes, class_counts, test variants and their priors, no shot_groups()."""

    num_classes = 4
    class_counts = CLASS_COUNTS
    test_variants = tuple(TEST_COUNTS)

    def test_prior(self, variant: str) -> torch.Tensor:
        counts = torch.tensor(TEST_COUNTS[variant], dtype=torch.float)
        return counts / counts.sum()

    def test_dataloader(self):
        # batches of 16 without sample indices: 85 samples leave a short last batch
        return [DataLoader(TensorDataset(*variant_logits(v)), batch_size=16) for v in self.test_variants]


class FixedLogitsDataWithGroups(FixedLogitsData):
    """The built-in DataModules' path: shot groups from the DataModule's own thresholds."""

    def shot_groups(self):
        return {"many": [0, 1], "medium": [2], "few": [3]}


def expected_settings() -> list:
    """(name, mode, prior, OT batch size) written out by hand for the default modes and priors."""
    out = [("softmax", "softmax", None, None), ("tau_norm", "tau_norm", None, None)]
    out += [(f"class_bias:{p}", "class_bias", p, None) for p in ("known", "uniform", "estimated")]
    for mode in ("reot", "dbot"):
        for p in ("known", "uniform", "estimated"):
            out += [(f"{mode}:{p}", mode, p, OT_BATCH), (f"{mode}_whole:{p}", mode, p, None)]
    for mode in ("reot_stream", "dbot_stream"):  # served batch by batch; no whole-set entry (that is <mode>_whole)
        out += [(f"{mode}:{p}", mode, p, OT_BATCH) for p in ("known", "uniform", "estimated")]
    return out


def run_test(tmp_path, data: L.LightningDataModule) -> tuple:
    torch.manual_seed(0)
    model = LogitsAsInput(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [4]},
                          ot_batch_size=OT_BATCH, inference_kwargs=INFERENCE_KWARGS)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.test(model, datamodule=data)
    with open(os.path.join(tmp_path, "test_results.json")) as fh:
        return model, trainer, json.load(fh)


def assert_same(got: dict, want: dict, label: str) -> None:
    assert set(got) == set(want), label
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), f"{label}/{key}"
        elif key == "per_class":
            assert got[key] == pytest.approx(value, nan_ok=True), f"{label}/{key}"
        elif key == "confusion":
            assert got[key] == value, f"{label}/{key}"
        else:
            assert got[key] == pytest.approx(value), f"{label}/{key}"


@pytest.mark.parametrize("data,groups", [(FixedLogitsData(), GROUPS),
                                         (FixedLogitsDataWithGroups(), {"many": [0, 1], "medium": [2], "few": [3]})])
def test_results_equal_head_predict_with_each_variants_prior(tmp_path, data, groups):
    model, trainer, saved = run_test(tmp_path, data)
    assert saved["class_counts"] == CLASS_COUNTS
    results = saved["results"]
    assert list(results) == ["balanced", "lt", "reverse_lt"]
    head = model.head
    for variant in TEST_COUNTS:
        logits, y = variant_logits(variant)
        known = data.test_prior(variant)
        priors = {"known": known, "uniform": "uniform", "estimated": "estimated"}
        assert [k for k in results[variant] if k != "em_prior"] == [name for name, *_ in expected_settings()]
        for name, mode, prior, batch_size in expected_settings():
            kwargs = dict(INFERENCE_KWARGS.get(mode.replace("_stream", ""), {}))  # stream modes: their base's
            if mode in ("reot", "dbot", "reot_stream", "dbot_stream"):
                kwargs.update(batch_size=batch_size, seed=0)
            preds = head.predict(logits, mode=mode, test_prior=priors[prior] if prior else "uniform", **kwargs)
            want = evaluate_predictions(preds, y, 4, groups)
            assert_same(results[variant][name], want, f"{variant}/{name}")
            assert float(trainer.callback_metrics[f"test/{variant}/{name}/top1"]) == pytest.approx(want["top1"])
        assert results[variant]["em_prior"]["known"] == pytest.approx(known.double().tolist())


def test_known_prior_changes_ot_predictions():
    """The fixed logits are weak enough that the LT variants' known prior changes OT predictions, so a test run
    that gave OT inference the uniform prior instead could not match the expected results above."""
    from otcls.heads import TransportHead

    head = TransportHead(8, 4, class_counts=CLASS_COUNTS)
    for variant in ("lt", "reverse_lt"):
        logits, _ = variant_logits(variant)
        prior = FixedLogitsData().test_prior(variant)
        for mode in ("reot", "dbot", "class_bias"):
            assert not torch.equal(head.predict(logits, mode=mode, test_prior=prior),
                                   head.predict(logits, mode=mode, test_prior="uniform")), (variant, mode)


class OneTestSet(L.LightningDataModule):
    """The least a DataModule needs: num_classes, class_counts and one test loader (no variants, no priors)."""

    num_classes = 4
    class_counts = CLASS_COUNTS

    def test_dataloader(self):
        return DataLoader(TensorDataset(*variant_logits("lt")), batch_size=16)


def test_one_test_set_is_named_all(tmp_path):
    model, trainer, saved = run_test(tmp_path, OneTestSet())
    assert list(saved["results"]) == ["all"]
    assert "known" not in " ".join(saved["results"]["all"])  # no test prior to know
    logits, y = variant_logits("lt")
    want = evaluate_predictions(model.head.predict(logits), y, 4, GROUPS)
    assert float(trainer.callback_metrics["test/all/softmax/top1"]) == pytest.approx(want["top1"])
    assert not [k for k in trainer.callback_metrics if k.startswith("test/test/")]
