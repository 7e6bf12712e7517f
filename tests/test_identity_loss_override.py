"""A loss set on the command line on top of a method config is another method: the loss names the run."""
from __future__ import annotations

import os

from jsonargparse import Namespace

from otcls.lightning_cli import method_of_run, run_name

CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _cfg(loss, seed=0):
    return Namespace(seed_everything=seed, run_name=None,
                     model=Namespace(class_path="otcls.tasks.ImageClassifier", init_args=Namespace(loss=loss)))


def test_loss_override_names_the_run_by_its_loss():
    ce = ["--config", f"{CFG}/base/fmnist.yaml", "--config", f"{CFG}/fmnist_lt/ce.yaml"]
    assert run_name(_cfg("ce"), method_of_run(_cfg("ce"), ce)) == "ce-s0"
    # every spelling of the override: the resolved loss is what counts
    for extra in (["--model.init_args.loss", "balanced_softmax"], ["--model.init_args.loss=balanced_softmax"],
                  ["--model.loss", "balanced_softmax"]):
        assert method_of_run(_cfg("balanced_softmax"), ce + extra) is None
        assert run_name(_cfg("balanced_softmax"), method_of_run(_cfg("balanced_softmax"), ce + extra)) == \
            "balanced_softmax-s0"
    # the same loss given again, or options of the loss, are not another method: it keeps its name
    assert method_of_run(_cfg("ce"), ce + ["--model.init_args.loss", "ce"]) == "ce"
    assert method_of_run(_cfg("ce"), ce + ["--model.init_args.loss_kwargs", "{tau: 2.0}"]) == "ce"
    # the custom-data example: one config, the loss chosen on the command line
    example = ["--config", os.path.join(os.path.dirname(CFG), "examples", "custom_data", "config.yaml")]
    assert run_name(_cfg("reot", 2), method_of_run(_cfg("reot", 2), example + ["--model.init_args.loss", "reot"])) \
        == "reot-s2"
