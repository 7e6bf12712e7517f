"""otcls._extras: the ImportError of a missing area names its pip extra; setup.cfg declares the same extras."""
from __future__ import annotations

import configparser
import importlib.util
from pathlib import Path

import pytest

from otcls import _extras
from otcls._extras import EXTRAS, install_hint, require

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _hide(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(_extras.importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in names else real(name, *a, **k))


def test_missing_package_names_the_extra(monkeypatch):
    _hide(monkeypatch, "ortools")
    with pytest.raises(ImportError, match=r"pip install 'otcls\[cluster\]'") as err:
        require("cluster")
    assert "ortools" in str(err.value) and err.value.name == "ortools"
    require("cluster", "sklearn")  # only the named packages are checked


def test_installed_area_passes():
    if any(importlib.util.find_spec(m) is None for m in EXTRAS["slurm"][1]):
        pytest.skip("submitit is not installed here")
    require("slurm")


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="unknown otcls extra 'gpu'"):
        install_hint("gpu")
    with pytest.raises(ValueError, match="not packages of the 'plots' extra"):
        require("plots", "wandb")


def test_setup_cfg_declares_every_area_and_all_of_them():
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    extras = cfg["options.extras_require"]
    assert set(EXTRAS) | {"all", "test", "bench"} == set(extras)
    assert set(extras["all"].strip().split("[", 1)[1].rstrip("]").split(",")) == set(EXTRAS)
    core = [line.strip() for line in cfg["options"]["install_requires"].strip().splitlines()]
    assert not [r for r in core if "==" in r], "exact versions belong in constraints.txt"
    # Distribution names an area's modules come from (import name -> pip name where they differ).
    dist = {"sklearn": "scikit-learn", "torch_geometric": "torch-geometric"}
    for extra, (_, modules) in EXTRAS.items():
        declared = {line.strip().split(">")[0].split("=")[0].lower() for line in extras[extra].strip().splitlines()}
        assert {dist.get(m, m) for m in modules} <= declared, (extra, modules, declared)
