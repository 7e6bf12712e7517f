"""LVIS loss configs, resolved by the CLI on top of their base config, select the loss and options written out in
``config_expectations`` (the image and molecule configs are checked where they are run)."""
from __future__ import annotations

import os

import pytest
import yaml

from otcls.lightning_cli import run

from .config_expectations import LVIS_LOSSES, selected

CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "lvis")
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


@pytest.mark.parametrize("recipe", ["demo", "lvis_v1"])
def test_every_lvis_loss_config_selects_its_loss(recipe, capsys):
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(CFG, recipe)))
    assert names == sorted(LVIS_LOSSES)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            run(["fit", "--config", f"{CFG}/base/{recipe}.yaml", "--config", f"{CFG}/{recipe}/{name}.yaml",
                 "--print_config"])
        assert exc.value.code in (0, None), name
        printed = yaml.safe_load(capsys.readouterr().out)
        assert selected(printed["model"]["init_args"]) == LVIS_LOSSES[name], name
