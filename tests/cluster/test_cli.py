"""``otcls cluster`` end to end on a small CSV."""
import csv

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from otcls.cli import main as otcls_main


def test_cluster_cli_writes_labels_and_plot(tmp_path):
    X, _ = make_blobs([30, 15, 15], centers=[[0, 0], [4, 0], [2, 3]], random_state=0)
    data = tmp_path / "points.csv"
    np.savetxt(data, X, delimiter=",", header="x,y", comments="")
    out = tmp_path / "out"
    assert otcls_main(["cluster", "--data", str(data), "--n-clusters", "3", "--size-min", "18",
                       "--size-max", "22", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "labels.csv")))
    assert len(rows) == 60
    sizes = np.bincount([int(r["rounded_label"]) for r in rows], minlength=3)
    assert sizes.min() >= 18 and sizes.max() <= 22
    assert (out / "clusters.png").stat().st_size > 0
    assert np.load(out / "centers.npy").shape == (3, 2)


def test_cluster_cli_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        otcls_main(["cluster", "--data", str(tmp_path / "nope.csv"), "--n-clusters", "2"])
