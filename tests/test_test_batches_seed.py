"""Per-batch OT inference at test time uses the same fixed batches for every model, whatever its training length:
a model that has trained (global_step != 0) is scored on the batches of seed 0, like an untrained one."""
from __future__ import annotations

import lightning as L
import torch

from .test_image_test_wiring import (INFERENCE_KWARGS, OT_BATCH, TEST_COUNTS, FixedLogitsData, LogitsAsInput,
                                     variant_logits)

from otcls.tasks.evaluation import evaluate_predictions


class Trained(LogitsAsInput):
    """As if fitted for 7 optimizer steps."""

    @property
    def global_step(self) -> int:
        return 7


def test_ot_test_batches_do_not_depend_on_global_step(tmp_path):
    torch.manual_seed(0)
    model = Trained(backbone="small_cnn", backbone_kwargs={"in_channels": 1, "channels": [4]},
                    ot_batch_size=OT_BATCH, inference_kwargs=INFERENCE_KWARGS, inference_modes=["reot", "dbot"],
                    test_priors=["known"], ot_whole_set=False)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.test(model, datamodule=FixedLogitsData())
    assert model.global_step == 7
    differs = 0
    for variant in TEST_COUNTS:
        logits, y = variant_logits(variant)
        prior = FixedLogitsData().test_prior(variant)
        for mode in ("reot", "dbot"):
            kw = dict(INFERENCE_KWARGS[mode], batch_size=OT_BATCH)
            want = model.head.predict(logits, mode=mode, test_prior=prior, seed=0, **kw)
            other = model.head.predict(logits, mode=mode, test_prior=prior, seed=7, **kw)
            differs += int(not torch.equal(want, other))
            got = trainer.callback_metrics[f"test/{variant}/{mode}:known/top1"]
            assert abs(float(got) - evaluate_predictions(want, y, 4, {})["top1"]) < 1e-4, (variant, mode)
    assert differs > 0  # the batches of another seed change some predictions: the check above can tell
