"""OGB molecule graphs (``ogbg-mol*``) as a LightningDataModule, read by OGB's own loader.

Sets on OGB's master list (``ogbg-molbbbp``, ``ogbg-molbace``, ``ogbg-molhiv``, …) are
downloaded by OGB into ``root`` (or found there); sets written by ``otcls make-molecules``
carry a ``meta_dict.json`` and go through the same ``PygGraphPropPredDataset`` via OGB's
``meta_dict`` mechanism. Splits are the dataset's own (scaffold for molecules).

ROC-AUC: OGB's ``Evaluator`` for master-list names; for other sets :func:`rocauc`, which is
the same computation (mean over tasks of scikit-learn's ROC-AUC, NaN labels ignored, tasks
without both classes skipped). Multi-class sets are scored one-vs-rest, macro averaged.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import lightning as L
import numpy as np
import torch

from otcls._extras import require

require("mol", "pandas", "ogb", "torch_geometric", "sklearn")

import pandas as pd  # noqa: E402

from otcls.data.molecule_convert import RAW_FILES, dir_name

MASTER_CSV = "master.csv"


def ogb_master() -> pd.DataFrame:
    """OGB's table of graph-property datasets (columns are dataset names)."""
    import ogb.graphproppred

    path = os.path.join(os.path.dirname(ogb.graphproppred.__file__), MASTER_CSV)
    return pd.read_csv(path, index_col=0, keep_default_na=False)


def rocauc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC-AUC as OGB computes it.

    ``y_true`` (N,T) with 0/1 (NaN = unlabelled) and ``y_score`` (N,T): mean over tasks that
    have both classes of ``sklearn.metrics.roc_auc_score``. ``y_true`` (N,) integer with
    ``y_score`` (N,C), C > 2: one-vs-rest ROC-AUC, macro average over classes.
    """
    from sklearn.metrics import roc_auc_score

    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_true.ndim == 1 and y_score.ndim == 2 and y_score.shape[1] > 2:
        if len(y_true) != len(y_score):
            raise ValueError(f"y_true has {len(y_true)} rows but y_score has {len(y_score)}")
        present = np.unique(y_true)
        if len(present) < 2:
            raise ValueError("ROC-AUC needs at least two classes present in y_true")
        scores = y_score / y_score.sum(axis=1, keepdims=True)
        return float(roc_auc_score(y_true, scores, multi_class="ovr", average="macro",
                                   labels=np.arange(y_score.shape[1])))
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"binary ROC-AUC needs y_true and y_score of the same (N, tasks) shape, "
                         f"got {y_true.shape} and {y_score.shape}")
    per_task = []
    for t in range(y_true.shape[1]):
        labelled = ~np.isnan(y_true[:, t].astype(np.float64))
        yt = y_true[labelled, t]
        if (yt == 1).any() and (yt == 0).any():
            per_task.append(roc_auc_score(yt, y_score[labelled, t]))
    if not per_task:
        raise ValueError("no task has both positive and negative labels; ROC-AUC is undefined")
    return float(np.mean(per_task))


def _safe_load_globals() -> list:
    """PyG classes inside OGB's processed file; torch>=2.6 loads only allow-listed globals."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    return [DataEdgeAttr, DataTensorAttr, GlobalStorage]


class IndexedGraphs(torch.utils.data.Dataset):
    """A graph dataset whose items carry their position (``data.sample_idx``, batched to ``(B,)``), so an
    evaluation gathered from several ranks can drop the repeats a DistributedSampler pads in."""

    def __init__(self, graphs) -> None:
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, k: int):
        data = self.graphs[int(k)].clone()
        data.sample_idx = torch.tensor([int(k)])
        return data


class MoleculeDataModule(L.LightningDataModule):
    """OGB molecule classification set with its own split (train/valid/test).

    Args:
        name: OGB dataset name: one on OGB's master list (``ogbg-molbbbp``) or one written by
            ``otcls make-molecules`` (``ogbg-molsol-binary``).
        root: folder holding ``<name with _>/`` (OGB's layout); OGB downloads into it.
        download: allow OGB to download master-list sets that are not in ``root``.
        batch_size / eval_batch_size / num_workers: loader settings (OGB examples: batch 32).

    After :meth:`setup`: ``num_classes``, ``class_counts`` (train split), ``class_names``.
    Only single-task sets fit one classification head; multi-task sets (tox21, …) raise.
    """

    RAW_FILES = RAW_FILES

    def __init__(self, name: str = "ogbg-molbbbp", root: str = "data/ogb", download: bool = True,
                 batch_size: int = 32, eval_batch_size: Optional[int] = None, num_workers: int = 0) -> None:
        super().__init__()
        if not name.startswith("ogbg-mol"):
            raise ValueError(f"name must be an OGB molecule set 'ogbg-mol…', got '{name}'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.name, self.root, self.download = name, root, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.in_master = name in ogb_master().columns
        self.num_classes: int = 0
        self.class_counts: Optional[List[int]] = None
        self.class_names: List[str] = []
        self._dataset = None
        self._split: Dict[str, torch.Tensor] = {}

    # --- locating the files ------------------------------------------------------------------
    def dataset_dir(self) -> str:
        """Where OGB reads the set: ``root/<dir>_pyg`` if present (OGB's rule), else ``root/<dir>``."""
        base = os.path.join(self.root, dir_name(self.name))
        return base + "_pyg" if self.in_master and os.path.isdir(base + "_pyg") else base

    def _meta(self) -> Optional[dict]:
        """OGB meta_dict: ``None`` (master list) or the converter's ``meta_dict.json``."""
        if self.in_master:
            return None
        path = os.path.join(self.dataset_dir(), "meta_dict.json")
        if not os.path.isfile(path):
            raise ValueError(
                f"'{self.name}' is not on OGB's list and {path} does not exist; write it with "
                f"`otcls make-molecules --preset solubility-binary --root {self.root}` (or --csv FILE "
                f"--name {self.name}), or check data.root")
        with open(path) as f:
            meta = json.load(f)
        meta["dir_path"] = os.path.abspath(self.dataset_dir())  # the folder may have moved
        return meta

    def _check_files(self, meta: Optional[dict]) -> None:
        """Refuse the two states where OGB would download or wait on ``input()`` (no terminal: hang)."""
        path = self.dataset_dir()
        version = (meta or ogb_master()[self.name])["version"]
        marker = os.path.join(path, f"RELEASE_v{version}.txt")
        if os.path.isdir(path) and not os.path.isfile(marker):
            raise ValueError(
                f"{path} exists but lacks {os.path.basename(marker)}; OGB would stop and ask on stdin whether "
                f"to delete it. Remove the folder to download again, or rewrite it with otcls make-molecules")
        missing = [f for f in self.RAW_FILES if not os.path.isfile(os.path.join(path, "raw", f))]
        if not missing:
            return
        if not self.in_master:
            raise ValueError(f"{path}/raw lacks {missing}; rewrite the set with `otcls make-molecules`")
        if not self.download:
            url = ogb_master()[self.name]["url"]
            raise ValueError(f"{self.name} is not in {self.root} (missing raw/{missing[0]}) and download=False; "
                             f"set download: true, or fetch {url} and unzip it into {self.root}")

    # --- Lightning hooks ---------------------------------------------------------------------
    def _load(self):
        from ogb.graphproppred import PygGraphPropPredDataset

        meta = self._meta()
        self._check_files(meta)
        os.makedirs(self.root, exist_ok=True)
        try:
            with torch.serialization.safe_globals(_safe_load_globals()):
                return PygGraphPropPredDataset(name=self.name, root=self.root, meta_dict=meta)
        except OSError as err:  # URLError is an OSError: no network
            url = ogb_master()[self.name]["url"] if self.in_master else ""
            raise ValueError(f"could not download {self.name} ({err}); fetch {url} by hand and unzip it "
                             f"into {self.root}") from err

    def prepare_data(self) -> None:
        self._load()

    def setup(self, stage: Optional[str] = None) -> None:
        if self._dataset is not None:
            return
        ds = self._load()
        if ds.num_tasks != 1 or "classification" not in ds.task_type:
            raise ValueError(f"{self.name} is a {ds.num_tasks}-task {ds.task_type} set; MoleculeClassifier "
                             f"needs one classification task (e.g. ogbg-molbbbp, ogbg-molbace, ogbg-molhiv)")
        y = ds.y.view(-1).to(torch.float64)
        labelled = ~torch.isnan(y)
        self.num_classes = int(ds.num_classes)
        split = ds.get_idx_split()
        self._split = {k: v[labelled[v]] for k, v in split.items()}
        train_y = y[self._split["train"]].long()
        self.class_counts = torch.bincount(train_y, minlength=self.num_classes).tolist()
        meta = self._meta()
        self.class_names = json.loads(meta["class names"]) if meta and "class names" in meta \
            else [str(c) for c in range(self.num_classes)]
        self._dataset = ds

    def split(self, name: str):
        """The ``train`` / ``valid`` / ``test`` subset (PyG dataset)."""
        if self._dataset is None:
            self.setup()
        if name not in self._split:
            raise ValueError(f"unknown split '{name}'; choose train, valid or test")
        return self._dataset[self._split[name]]

    def _loader(self, split: str, shuffle: bool):
        from torch_geometric.loader import DataLoader

        bs = self.batch_size if split == "train" else self.eval_batch_size
        data = self.split(split) if split == "train" else IndexedGraphs(self.split(split))
        return DataLoader(data, batch_size=bs, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("valid", False)

    def test_dataloader(self):
        return self._loader("test", False)

    def predict_dataloader(self):
        return self._loader("test", False)

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, y_true: torch.Tensor, probs: torch.Tensor) -> float:
        """ROC-AUC of class probabilities ``probs`` (N,C) against labels ``y_true`` (N,).

        Binary sets score the positive-class column; master-list sets go through OGB's Evaluator.
        """
        y_true = y_true.detach().view(-1).cpu()
        probs = probs.detach().float().cpu()
        if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
            raise ValueError(f"probs must be (N, C) with N = len(y_true) = {len(y_true)}, got {tuple(probs.shape)}")
        if probs.shape[1] == 2:
            y, s = y_true.view(-1, 1).numpy(), probs[:, 1:].numpy()
            if self.in_master:
                from ogb.graphproppred import Evaluator

                return float(Evaluator(self.name).eval({"y_true": y, "y_pred": s})["rocauc"])
            return rocauc(y, s)
        return rocauc(y_true.numpy(), probs.numpy())
