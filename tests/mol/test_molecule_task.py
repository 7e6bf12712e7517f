"""GIN/GCN encoders and the MoleculeClassifier end to end on the tiny converted set."""
from __future__ import annotations

import json
import os

import lightning as L
import numpy as np
import pytest
import torch

from otcls.data.molecules import MoleculeDataModule
from otcls.models.gnn import BondGCNConv, MoleculeGNN
from otcls.tasks.molecule import MoleculeClassifier

from ..config_expectations import MOLECULE_LOSSES

pytestmark = pytest.mark.timeout(150)


def _batch(smiles):
    from ogb.utils import smiles2graph
    from torch_geometric.data import Batch, Data

    graphs = []
    for s in smiles:
        g = smiles2graph(s)
        graphs.append(Data(x=torch.from_numpy(g["node_feat"]), edge_index=torch.from_numpy(g["edge_index"]),
                           edge_attr=torch.from_numpy(g["edge_feat"]), num_nodes=g["num_nodes"]))
    return Batch.from_data_list(graphs)


def test_bond_gcn_matches_dense_formula():
    torch.manual_seed(0)
    b = _batch(["CC(=O)Nc1ccccc1"])
    conv = BondGCNConv(8).double()
    torch.nn.init.normal_(conv.root)
    h = torch.randn(b.num_nodes, 8, dtype=torch.float64)
    out = conv(h, b.edge_index, b.edge_attr)
    # dense reference: d_i = deg(i) + 1, sum over neighbours of relu(W h_j + e_ij)/sqrt(d_i d_j) + relu(W h_i + r)/d_i
    wh = conv.linear(h)
    e = conv.bond(b.edge_attr)
    n = b.num_nodes
    deg = torch.zeros(n, dtype=torch.float64).index_add_(0, b.edge_index[0], torch.ones(b.edge_index.shape[1],
                                                                                          dtype=torch.float64)) + 1
    ref = torch.relu(wh + conv.root) / deg[:, None]
    for k, (j, i) in enumerate(b.edge_index.T.tolist()):
        ref[i] += torch.relu(wh[j] + e[k]) / (deg[i] * deg[j]).sqrt()
    assert torch.allclose(out, ref, atol=1e-10)


@pytest.mark.parametrize("conv, vn", [("gin", False), ("gin", True), ("gcn", False), ("gcn", True)])
def test_encoder_is_invariant_to_atom_order_and_batching(conv, vn):
    torch.manual_seed(0)
    model = MoleculeGNN(conv, num_layers=2, hidden=16, virtual_node=vn, residual=vn).double().eval()
    smiles = ["OC(=O)c1ccccc1O", "CCN(CC)CC", "[Na+].[Cl-]"]
    together = model(_batch(smiles))
    assert together.shape == (3, 16)
    alone = torch.cat([model(_batch([s])) for s in smiles])
    assert torch.allclose(together, alone, atol=1e-10)
    perm = _batch(["c1(O)c(C(=O)O)cccc1"])  # the same molecule, atoms in another order
    assert torch.allclose(model(perm)[0], together[0], atol=1e-10)


def test_encoder_rejects_bad_config_and_features():
    with pytest.raises(ValueError, match="conv"):
        MoleculeGNN("gat")
    with pytest.raises(ValueError, match="pooling"):
        MoleculeGNN(pooling="median")
    b = _batch(["CCO"])
    b.x = b.x[:, :5]
    with pytest.raises(ValueError, match=r"x \(atoms, 9\)"):
        MoleculeGNN(num_layers=1, hidden=8)(b)


def _trainer(tmp_path, **kw):
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(tmp_path), **kw)


@pytest.mark.parametrize("conv, loss", [("gin", "reot"), ("gcn", "dbot")])
def test_fast_dev_run_fit(mol_root, tmp_path, conv, loss):
    dm = MoleculeDataModule("ogbg-moltiny-binary", root=mol_root, batch_size=8)
    model = MoleculeClassifier(conv=conv, num_layers=2, hidden=16, virtual_node=conv == "gin", loss=loss)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    _trainer(tmp_path, fast_dev_run=2).fit(model, dm)
    assert model.head is not None and model.hparams.class_counts == dm.class_counts
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))


def test_test_rocauc_equals_sklearn_on_the_same_predictions(mol_root, tmp_path):
    from sklearn.metrics import roc_auc_score

    L.seed_everything(0)
    dm = MoleculeDataModule("ogbg-moltiny-binary", root=mol_root, batch_size=8)
    model = MoleculeClassifier(num_layers=2, hidden=16, loss="balanced_softmax",
                               inference_modes=["softmax", "reot"])
    trainer = _trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(model, dm)
    logged = trainer.test(model, dm, verbose=False)[0]
    probs = torch.cat(trainer.predict(model, dm))
    y = dm.split("test").y.view(-1).numpy()
    assert len(np.unique(y)) == 2
    assert logged["test/rocauc"] == pytest.approx(roc_auc_score(y, probs[:, 1].numpy()), abs=1e-6)
    saved = json.load(open(os.path.join(str(tmp_path), "mol_test_results.json")))
    assert saved["dataset"] == "ogbg-moltiny-binary" and set(saved["results"]) == {"softmax", "reot"}
    assert saved["results"]["softmax"]["rocauc"] == pytest.approx(logged["test/rocauc"], abs=1e-6)


def test_three_class_set_and_missing_num_classes(mol_root, tmp_path):
    dm = MoleculeDataModule("ogbg-moltiny-3class", root=mol_root, batch_size=8)
    model = MoleculeClassifier(conv="gcn", num_layers=1, hidden=8, loss="ce")
    _trainer(tmp_path, fast_dev_run=1).fit(model, dm)
    assert model.head.num_classes == 3
    bare = MoleculeClassifier(num_layers=1, hidden=8)
    with pytest.raises(ValueError, match="num_classes"):
        _trainer(tmp_path, fast_dev_run=1).fit(bare, train_dataloaders=dm.train_dataloader())


LOSS_CONFIGS = sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mol", "losses")))


def test_loss_configs_are_the_expected_ones():
    assert sorted(f[:-5] for f in LOSS_CONFIGS) == sorted(MOLECULE_LOSSES)


@pytest.mark.parametrize("loss_cfg", LOSS_CONFIGS)
def test_every_loss_config_runs_through_otcls_fit(mol_root, tmp_path, monkeypatch, loss_cfg):
    from otcls.lightning_cli import run

    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mol")
    run(["fit", "--config", os.path.join(cfg, "base", "solubility_binary.yaml"),
         "--config", os.path.join(cfg, "losses", loss_cfg),
         "--data.init_args.name", "ogbg-moltiny-binary", "--data.init_args.root", mol_root,
         "--model.init_args.hidden", "8", "--model.init_args.num_layers", "1",
         "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path),
         "--trainer.enable_progress_bar", "false"])
    saved = json.load(open(tmp_path / "mol_test_results.json"))
    want = MOLECULE_LOSSES[loss_cfg[:-5]]
    assert (saved["loss"], saved["loss_kwargs"]) == (want["loss"], want["loss_kwargs"])
    assert 0.0 <= saved["results"]["softmax"]["rocauc"] <= 1.0


@pytest.mark.timeout(450)
def test_ddp_test_scores_every_graph_once(mol_root, tmp_path):
    """3 CPU processes on the 4 test graphs: the sampler pads to 6; each graph must be scored once, and the
    ROC-AUC must equal the one-process number."""
    import subprocess
    import sys

    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mol")
    args = ["--config", os.path.join(cfg, "base", "solubility_binary.yaml"), "--config",
            os.path.join(cfg, "losses", "ce.yaml"), "--data.init_args.name", "ogbg-moltiny-binary",
            "--data.init_args.root", mol_root, "--model.init_args.hidden", "8", "--model.init_args.num_layers", "1",
            "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--seed_everything", "0",
            "--trainer.accelerator", "cpu", "--model.init_args.inference_modes", "[softmax, reot]"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    one, three = str(tmp_path / "one"), str(tmp_path / "three")
    for root, extra in ((one, []), (three, ["--trainer.strategy", "ddp", "--trainer.devices", "3"])):
        proc = subprocess.run([sys.executable, "-m", "otcls.cli", "fit", *args, "--trainer.default_root_dir", root,
                               *extra], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = sorted(os.listdir(os.path.join(three, "checkpoints")))
    assert ckpt  # the DDP fit saved its model; test it again in one process for the reference number
    ref = subprocess.run([sys.executable, "-m", "otcls.cli", "test", *args, "--trainer.default_root_dir", one,
                          "--ckpt_path", os.path.join(three, "checkpoints", "last.ckpt")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    ddp = json.load(open(os.path.join(three, "mol_test_results.json")))["results"]
    # otcls test writes beside the checkpoint it tested, leaving the DDP fit's own results in place
    single = json.load(open(os.path.join(three, "checkpoints", "last.mol_test_results.json")))["results"]
    n_test = len(MoleculeDataModule("ogbg-moltiny-binary", root=mol_root).split("test"))
    assert list(ddp) == list(single) == ["softmax", "reot"]
    for mode in single:  # every inference mode, OT over the whole test set included
        assert ddp[mode]["n"] == single[mode]["n"] == n_test
        assert ddp[mode] == pytest.approx(single[mode], abs=1e-9, nan_ok=True), mode


def test_test_priors_score_ot_inference_with_the_known_and_estimated_test_prior(mol_root, tmp_path):
    from otcls.inference.priors import em_prior

    L.seed_everything(0)
    dm = MoleculeDataModule("ogbg-moltiny-binary", root=mol_root, batch_size=8)
    model = MoleculeClassifier(num_layers=2, hidden=16, inference_modes=["softmax", "dbot"],
                               test_priors=["known", "estimated"])
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    saved = json.load(open(os.path.join(str(tmp_path), "mol_test_results.json")))["results"]
    assert set(saved) == {"softmax", "dbot", "dbot:known", "dbot:estimated"}
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b) for b in dm.test_dataloader()])
    y = dm.split("test").y.view(-1)
    known = torch.bincount(y, minlength=2).double() / len(y)
    by_hand = model.head.predict(logits, mode="dbot", test_prior=known).eq(y).float().mean()
    assert saved["dbot:known"]["acc"] == pytest.approx(float(by_hand), abs=1e-6)
    est = em_prior(model.head.calibrated_logits(logits.double()).softmax(-1), model.head.calibrated_prior())
    by_hand = model.head.predict(logits, mode="dbot", test_prior=est).eq(y).float().mean()
    assert saved["dbot:estimated"]["acc"] == pytest.approx(float(by_hand), abs=1e-6)
    with pytest.raises(ValueError, match="test_priors"):
        MoleculeClassifier(test_priors=["oracle"])
