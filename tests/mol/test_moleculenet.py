"""ogbg-molbbbp / ogbg-molbace converted from MoleculeNet's CSVs, read back by OGB's own loader.

Needs the folder holding ``bbbp.csv`` and ``bace.csv`` in ``$OTCLS_MOLECULENET_ROOT`` (CI sets it);
skipped otherwise. The split sizes are OGB's published ones for its scaffold split files.
"""
from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pytest
import torch

from otcls.data.molecule_convert import MOLECULENET, SOURCE_ENV, main, scaffold_split
from otcls.data.molecules import MoleculeDataModule, _safe_load_globals

SOURCE = os.environ.get(SOURCE_ENV)
pytestmark = [pytest.mark.skipif(not SOURCE or not os.path.isfile(os.path.join(SOURCE, "bbbp.csv")),
                                 reason=f"set {SOURCE_ENV} to the folder holding MoleculeNet's bbbp.csv / bace.csv"),
              pytest.mark.timeout(300)]

# OGB's sets: graphs, positives (MoleculeNet's labels), scaffold split sizes train / valid / test
OGB = {"molbbbp": ("ogbg-molbbbp", 2039, 1560, (1631, 204, 204)),
       "molbace": ("ogbg-molbace", 1513, 691, (1210, 151, 152))}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("ogb"))
    for preset in OGB:
        assert main(["--preset", preset, "--source", SOURCE, "--root", out]) == 0
    return out


def _split(root: str, name: str) -> dict:
    folder = os.path.join(root, name.replace("-", "_"), "split", "scaffold")
    return {k: pd.read_csv(os.path.join(folder, f"{k}.csv.gz"), header=None)[0].to_numpy()
            for k in ("train", "valid", "test")}


@pytest.mark.parametrize("preset", sorted(OGB))
def test_ogb_loader_reads_the_copy_with_its_own_meta(root, preset):
    """No meta_dict: OGB takes these names' settings from its master list, as for its download."""
    from ogb.graphproppred import PygGraphPropPredDataset

    name, n, positives, sizes = OGB[preset]
    assert not os.path.exists(os.path.join(root, name.replace("-", "_"), "meta_dict.json"))
    with torch.serialization.safe_globals(_safe_load_globals()):
        ds = PygGraphPropPredDataset(name=name, root=root)
    assert len(ds) == n and ds.num_tasks == 1 and ds.eval_metric == "rocauc"
    assert int(ds.y.sum()) == positives
    split = ds.get_idx_split()
    assert tuple(len(split[k]) for k in ("train", "valid", "test")) == sizes


@pytest.mark.parametrize("preset", sorted(OGB))
def test_split_sizes_disjoint_deterministic(root, preset):
    name, n, _, sizes = OGB[preset]
    split = _split(root, name)
    assert tuple(len(split[k]) for k in ("train", "valid", "test")) == sizes
    together = np.concatenate(list(split.values()))
    assert len(np.unique(together)) == n and together.min() == 0 and together.max() == n - 1
    smiles = pd.read_csv(os.path.join(SOURCE, MOLECULENET[preset][1]))["smiles"].tolist()
    again = scaffold_split(smiles)
    assert all(np.array_equal(again[k], split[k]) for k in split)
    # no scaffold is in two parts
    from rdkit.Chem.Scaffolds import MurckoScaffold

    scaffold = [MurckoScaffold.MurckoScaffoldSmiles(smiles=s, includeChirality=True) for s in smiles]
    parts = [{scaffold[i] for i in split[k]} for k in ("train", "valid", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


@pytest.mark.parametrize("preset", sorted(OGB))
def test_graphs_and_labels_equal_smiles2graph_of_the_csv(root, preset):
    from ogb.utils import smiles2graph

    name, n, positives, _ = OGB[preset]
    _, fname, label_col, _ = MOLECULENET[preset]
    csv = pd.read_csv(os.path.join(SOURCE, fname))
    dm = MoleculeDataModule(name, root=root, download=False)
    dm.setup()
    ds = dm._dataset
    assert np.array_equal(ds.y.view(-1).numpy(), csv[label_col].to_numpy())
    for i, s in enumerate(csv["smiles"]):
        g, ref = ds[i], smiles2graph(s)
        assert np.array_equal(g.x.numpy(), ref["node_feat"])
        # OGB stores each bond once and its loader adds the reverse direction: compare as edge sets
        ours = {(int(a), int(b), tuple(f)) for (a, b), f in zip(g.edge_index.t().tolist(), g.edge_attr.tolist())}
        theirs = {(int(a), int(b), tuple(f)) for (a, b), f in zip(ref["edge_index"].T.tolist(), ref["edge_feat"].tolist())}
        assert ours == theirs and g.edge_index.shape[1] == ref["edge_index"].shape[1]
    mapping = pd.read_csv(os.path.join(root, name.replace("-", "_"), "mapping", "mol.csv.gz"))
    assert list(mapping.columns) == [label_col, "smiles", "mol_id"]
    assert mapping["smiles"].tolist() == csv["smiles"].tolist()
    # label balance of the train split (the prior the long-tailed losses use)
    train_pos = int(csv[label_col].to_numpy()[_split(root, name)["train"]].sum())
    assert dm.class_counts == [OGB[preset][3][0] - train_pos, train_pos]


def test_evaluator_accepts_the_predictions(root):
    from ogb.graphproppred import Evaluator
    from sklearn.metrics import roc_auc_score

    dm = MoleculeDataModule("ogbg-molbbbp", root=root, download=False)
    y = dm.split("test").y.view(-1)
    probs = torch.rand(len(y), 2, generator=torch.Generator().manual_seed(0)).softmax(1)
    ref = Evaluator("ogbg-molbbbp").eval({"y_true": y.view(-1, 1).numpy(), "y_pred": probs[:, 1:].numpy()})["rocauc"]
    assert dm.evaluate(y, probs) == pytest.approx(ref, abs=1e-12)
    assert ref == pytest.approx(roc_auc_score(y.numpy(), probs[:, 1].numpy()), abs=1e-12)


def test_if_missing_keeps_the_copy_and_bad_sources_raise(root, tmp_path, capsys):
    marker = os.path.join(root, "ogbg_molbbbp", "split", "scaffold", "test.csv.gz")
    before = os.path.getmtime(marker)
    assert main(["--preset", "molbbbp", "--source", SOURCE, "--root", root, "--if-missing"]) == 0
    assert "not rewritten" in capsys.readouterr().out and os.path.getmtime(marker) == before
    with pytest.raises(ValueError, match="bbbp.csv"):
        main(["--preset", "molbbbp", "--source", str(tmp_path), "--root", str(tmp_path)])
    # a subset is not OGB's set: its split sizes differ and nothing is written
    csv = pd.read_csv(os.path.join(SOURCE, "bbbp.csv")).iloc[:500]
    csv.to_csv(tmp_path / "bbbp.csv", index=False)
    with pytest.raises(ValueError, match="1631 / 204 / 204"):
        main(["--preset", "molbbbp", "--source", str(tmp_path), "--root", str(tmp_path / "out")])
    assert not os.path.exists(tmp_path / "out" / "ogbg_molbbbp")


def test_split_files_hold_one_index_per_line(root):
    with gzip.open(os.path.join(root, "ogbg_molbace", "split", "scaffold", "valid.csv.gz"), "rt") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    assert len(lines) == 151 and all(line.isdigit() for line in lines)
