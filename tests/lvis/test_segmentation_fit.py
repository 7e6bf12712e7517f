"""``otcls fit`` with every demo method file (one loss each): fast_dev_run through LightningCLI + LVISEval."""
from __future__ import annotations

import json
import os

import pytest

from otcls.lightning_cli import run
from otcls.tasks.lvis_eval import METRICS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs", "lvis")
METHODS = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(CFG, "demo")))
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def test_every_loss_has_demo_and_lvis_v1_configs():
    assert set(METHODS) >= {"ce", "focal", "ldam", "logit_adjust", "cb_ce", "cb_focal", "balanced_softmax",
                            "reot_ratio", "dbot"}
    assert sorted(os.listdir(os.path.join(CFG, "demo"))) == sorted(os.listdir(os.path.join(CFG, "lvis_v1")))


@pytest.mark.parametrize("method", METHODS)
def test_fast_dev_run_fit_and_lvis_eval(method, demo_root, tmp_path):
    run_dir = str(tmp_path / method)
    run(["fit", "--config", f"{CFG}/base/demo.yaml", "--config", f"{CFG}/demo/{method}.yaml",
         "--data.init_args.root", demo_root, "--data.init_args.batch_size", "2",
         "--model.init_args.min_size", "64", "--model.init_args.max_size", "64",
         "--model.init_args.box_batch_size_per_image", "16", "--model.init_args.detections_per_img", "10",
         "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", run_dir])
    with open(os.path.join(run_dir, "test_results.json")) as fh:
        res = json.load(fh)
    assert res["loss"] == {"reot_ratio": "reot", "ldam": "ldam"}.get(method, res["loss"])
    assert set(res["metrics"]) == {f"{t}/{m}" for t in ("segm", "bbox") for m in METRICS}
    assert all(v == -1.0 or 0.0 <= v <= 1.0 for v in res["metrics"].values())


def test_bad_task_config():
    from otcls.tasks.segmentation import SegmentationTask

    with pytest.raises(ValueError, match="iou_types"):
        SegmentationTask(iou_types=["keypoints"])
    with pytest.raises(ValueError, match="unknown loss"):
        SegmentationTask(loss="nope", num_classes=3, backbone="resnet18_c3")
