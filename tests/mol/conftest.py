"""Small molecule sets written by the real converter into OGB's on-disk layout."""
from __future__ import annotations

import csv
import os

import pytest

# Real molecules from the RDKit solubility set (SMILES as RDKit writes them) plus edge cases:
# a salt (two fragments), a single atom without bonds, charges, aromatic N-H, stereo.
SMILES = [
    "CCCCC", "C1CCCC1", "CCCCCC", "CCCC(C)C", "CCC(C)(C)C", "c1ccccc1", "Cc1ccccc1", "CCc1ccccc1",
    "c1ccc2ccccc2c1", "c1ccc2c(c1)[nH]c1ccccc12", "OC(=O)c1ccccc1", "Nc1ccccc1", "Oc1ccccc1",
    "Clc1ccccc1", "CC(=O)O", "CCO", "CCCO", "CCCCO", "OCC(O)CO", "O=C1CCCCC1", "C1CCNCC1",
    "c1ccncc1", "c1ccc(-c2ccccc2)cc1", "C[C@H](N)C(=O)O", "[Na+].[Cl-]", "C", "O", "N#Cc1ccccc1",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "c1ccc2[nH]ccc2c1", "O=C(O)c1ccccc1O", "CN1CCC[C@H]1c1cccnc1",
    "ClC(Cl)Cl", "FC(F)(F)c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C1=CC=CC=C1C=O", "CCOC(=O)C", "CCN(CC)CC",
    "O=[N+]([O-])c1ccccc1", "Brc1ccccc1",
]
LABELS = [i % 3 for i in range(len(SMILES))]  # 3 classes, 14/13/13


def write_csv(path: str, smiles, labels, smiles_col: str = "smiles", label_col: str = "label") -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([smiles_col, label_col])
        w.writerows(zip(smiles, labels))
    return path


@pytest.fixture(scope="session")
def mol_root(tmp_path_factory) -> str:
    """A root holding ``ogbg-moltiny-3class`` and ``ogbg-moltiny-binary`` (written by the converter)."""
    from otcls.data.molecule_convert import main

    root = str(tmp_path_factory.mktemp("ogb"))
    csv3 = write_csv(os.path.join(root, "tiny3.csv"), SMILES, LABELS)
    csv2 = write_csv(os.path.join(root, "tiny2.csv"), SMILES, [int(y == 2) for y in LABELS])
    assert main(["--csv", csv3, "--name", "ogbg-moltiny-3class", "--root", root]) == 0
    assert main(["--csv", csv2, "--name", "ogbg-moltiny-binary", "--root", root]) == 0
    return root


@pytest.fixture(scope="session")
def tiny_set():
    """(SMILES, labels, write_csv) of the tiny set above."""
    return SMILES, LABELS, write_csv
