"""The loss and options each shipped config file is meant to select, written out by hand (not read from the
files), so a test can tell when a config file or the CLI's merging picks another loss or other options."""
from __future__ import annotations

from typing import Any, Dict, Optional


def selection(loss: str, loss_kwargs: Optional[dict] = None, classifier: str = "linear",
              head_kwargs: Optional[dict] = None) -> Dict[str, Any]:
    """The model arguments that decide the training loss, with the task's defaults filled in."""
    return {"loss": loss, "loss_kwargs": loss_kwargs, "classifier": classifier, "head_kwargs": head_kwargs}


# Fashion-MNIST-LT, CIFAR10/100-LT and ImageNet-LT: one file per method, the same settings in every benchmark.
IMAGE_METHODS = {
    "ce": selection("ce"),
    "focal": selection("focal", {"gamma": 1.0}),
    "ldam": selection("ldam", {"max_margin": 0.5, "s": 30.0, "drw_start": None}, "cosine", {"scale": 1.0}),
    "ldam_drw": selection("ldam", {"max_margin": 0.5, "s": 30.0, "drw_start": 0.8, "drw_beta": 0.9999}, "cosine",
                          {"scale": 1.0}),
    "logit_adjust": selection("logit_adjust", {"tau": 1.0}),
    "cb_ce": selection("cb_ce", {"beta": 0.9999}),
    "cb_focal": selection("cb_focal", {"beta": 0.9999, "gamma": 1.0}),
    "balanced_softmax": selection("balanced_softmax"),
    "reot_ratio": selection("reot", {"prior": "ratio", "tau": 1.0, "lam": 0.0}),
    "reot_teacher": selection("reot", {"prior": "teacher", "tau": 1.0, "lam": 0.0}),
    "dbot": selection("dbot", {"tau": 1.0, "delta": 0.2, "iters": 5, "ratio": "train", "prior": "counts"}),
}

# Where a benchmark's file selects other options than IMAGE_METHODS: the CIFAR-LT reot_ratio files use the RE-OT
# authors' prior (1 - mix)·batch ratio + mix·training ratio, with their mix (lamb) per dataset.
BENCHMARK_METHODS = {
    "cifar10_lt": {"reot_ratio": selection("reot", {"prior": "mix", "mix": 0.759333629819388, "tau": 1.0,
                                                    "lam": 0.0})},
    "cifar100_lt": {"reot_ratio": selection("reot", {"prior": "mix", "mix": 0.74, "tau": 1.0, "lam": 0.0})},
}


def image_method(bench: str, method: str) -> Dict[str, Any]:
    """The selection of ``configs/<bench>/<method>.yaml``."""
    return BENCHMARK_METHODS.get(bench, {}).get(method, IMAGE_METHODS[method])


# configs/mol/losses/<name>.yaml
MOLECULE_LOSSES = {
    "ce": selection("ce"),
    "focal": selection("focal", {"gamma": 2.0}),
    "ldam": selection("ldam"),
    "logit_adjust": selection("logit_adjust", {"tau": 1.0}),
    "cb_ce": selection("cb_ce", {"beta": 0.9999}),
    "cb_focal": selection("cb_focal", {"beta": 0.9999}),
    "balanced_softmax": selection("balanced_softmax"),
    "reot": selection("reot", {"prior": "ratio", "tau": 1.0, "lam": 0.0}),
    "dbot": selection("dbot", {"tau": 1.0, "delta": 0.2, "iters": 3, "ratio": "train"}),
}

# configs/lvis/{demo,lvis_v1}/<name>.yaml (the box classifier's loss)
LVIS_LOSSES = {
    "ce": selection("ce"),
    "focal": selection("focal", {"gamma": 2.0}),
    "ldam": selection("ldam", {"max_margin": 0.5, "s": 30.0, "drw_start": 0.8, "drw_beta": 0.9999}, "cosine"),
    "logit_adjust": selection("logit_adjust", {"tau": 1.0}),
    "cb_ce": selection("cb_ce", {"beta": 0.9999}),
    "cb_focal": selection("cb_focal", {"beta": 0.9999, "gamma": 2.0}),
    "balanced_softmax": selection("balanced_softmax"),
    "reot_ratio": selection("reot", {"prior": "ratio", "tau": 1.0, "lam": 0.0}),
    "dbot": selection("dbot", {"tau": 1.0, "delta": 0.2, "iters": 3, "ratio": "train"}),
}


def selected(model_args: Dict[str, Any]) -> Dict[str, Any]:
    """The loss-deciding subset of a model's resolved init_args (a config printed by the CLI, or hparams)."""
    return {key: model_args.get(key, selection("ce")[key]) for key in selection("ce")}
