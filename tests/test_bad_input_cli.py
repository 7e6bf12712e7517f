"""Bad input through ``otcls fit`` stops before training with the DataModule's own message."""
from __future__ import annotations

import pytest

from otcls.lightning_cli import run

from .test_cli_images import fmnist_args

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def test_a_profile_that_empties_classes_stops_otcls_fit(fmnist_root, tmp_path):
    # 60 images a class at IF 1000: int(60 · 1000^(-i/9)) = 0 for classes 6-9
    args = [*fmnist_args(fmnist_root, str(tmp_path)), "--data.init_args.imbalance_factor", "1000"]
    with pytest.raises(ValueError, match=r"classes \[6, 7, 8, 9\] get no training image"):
        run(["fit", *args])
