"""The RE-OT authors' Q(t) schedule (LiangliangShi/RE-OT, loss/REOT.py; config/cifar{10,100}_reot_imba200.yaml):
λ and the sharpening power against a table worked out by hand, the loss against their Q written out elementwise,
and the CIFAR-LT reot_ratio configs selecting it."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from otcls.callbacks.prior_schedule import PriorSchedule
from otcls.lightning_cli import run
from otcls.losses.reot import REOTLoss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs")
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

C10 = dict(t1=500, t2=462, t3=650, sharpen=1.03)
C100 = dict(t1=620, t2=650, t3=755, sharpen=1.03)


# (their 1-based epoch τ, λ, power), by hand: λ = (τ - t1) / ((τ - t1) + K (t2 - τ)) on the ramp.
@pytest.mark.parametrize("cfg,k,table", [
    (C10, 10, [(1, 0.0, 1.0), (500, 0.0, 1.0), (501, 1.0, 1.0), (600, 1.0, 1.0), (650, 1.0, 1.0),
               (651, 1.0, 1.03), (682, 1.0, 1.03)]),
    (C100, 100, [(300, 0.0, 1.0), (620, 0.0, 1.0), (635, 1.0 / 101.0, 1.0), (640, 20.0 / 1020.0, 1.0),
                 (650, 1.0, 1.0), (700, 1.0, 1.0), (755, 1.0, 1.0), (756, 1.0, 1.03), (790, 1.0, 1.03)]),
])
def test_lambda_and_power_table(cfg, k, table):
    sched = PriorSchedule("reot_authors", **cfg)
    for tau, lam, power in table:
        got = sched.authors_at(tau, k)
        assert got[0] == pytest.approx(lam, abs=1e-12), tau
        assert got[1] == power, tau


def test_epoch_rescaling_to_max_epochs():
    # their 682 epochs onto our 650: τ = (e + 1)·682/650; step after τ = 500 and power after τ = 650
    sched = PriorSchedule("reot_authors", reference_epochs=682, **C10)
    assert sched.authors_epoch(476, 650) == pytest.approx(477 * 682 / 650)  # 500.47
    lam_power = [sched.authors_at(sched.authors_epoch(e, 650), 10) for e in (475, 476, 618, 619)]
    assert lam_power == [(0.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.03)]
    assert PriorSchedule("reot_authors", **C10).authors_epoch(0, 650) == 1.0  # no rescaling: their 1-based epoch


def authors_loss(logits, targets, counts, lamb, tau, t1, t2, t3):
    """Their Q, written out from the description: a (B, K) matrix renormalised over all entries."""
    b, k = logits.shape
    u = torch.full((b, k), 1.0 / (b * k), dtype=logits.dtype)
    batch = torch.bincount(targets, minlength=k).to(logits.dtype) / b
    r = (1 - lamb) * batch + lamb * counts / counts.sum()
    spc = r.expand(b, k) * u
    if tau <= t1:
        q = u
    elif tau <= t2:
        q = (t2 - tau) * u + (tau - t1) * spc
    elif tau <= t3:
        q = spc
    else:
        q = spc ** 1.03
    return F.cross_entropy(logits + (q / q.sum()).log(), targets)


@pytest.mark.parametrize("tau", [100, 620, 625, 637.5, 649, 650, 700, 755, 756, 790])
def test_loss_matches_authors_q(tau):
    g = torch.Generator().manual_seed(int(tau))
    k, lamb = 100, 0.74
    counts = torch.tensor([int(500 * 200 ** (-i / (k - 1))) for i in range(k)], dtype=torch.float64)
    logits = torch.randn(64, k, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 30, (64,), generator=g)  # many classes absent from the batch
    loss = REOTLoss(k, counts, prior="mix", mix=lamb, tau=1.0, lam=0.0)
    loss.lam, loss.sharpen = PriorSchedule("reot_authors", **C100).authors_at(tau, k)
    assert loss(logits, targets).item() == pytest.approx(authors_loss(logits, targets, counts, lamb, tau, **{
        key: C100[key] for key in ("t1", "t2", "t3")}).item(), rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="per epoch"):
        PriorSchedule("reot_authors", interval="step", **C10)
    with pytest.raises(ValueError, match="max"):
        PriorSchedule("reot_authors", t1=500, t2=462, t3=400)
    with pytest.raises(ValueError, match="reference_epochs"):
        PriorSchedule("reot_authors", reference_epochs=0, **C10)
    with pytest.raises(ValueError, match="authors_at"):
        PriorSchedule("reot_authors", **C10).lam_at(3, 10)


@pytest.mark.parametrize("bench,init,mix", [
    ("cifar10_lt", dict(kind="reot_authors", t1=500, t2=462, t3=650, sharpen=1.03, reference_epochs=682),
     0.759333629819388),
    ("cifar100_lt", dict(kind="reot_authors", t1=620, t2=650, t3=755, sharpen=1.03, reference_epochs=790), 0.74),
])
def test_reot_ratio_configs_select_authors_schedule(bench, init, mix, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["fit", "--config", f"{CFG}/base/cifar.yaml", "--config", f"{CFG}/{bench}/data.yaml",
             "--config", f"{CFG}/{bench}/reot_ratio.yaml", "--print_config"])
    assert exc.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    sched = [cb for cb in printed["trainer"]["callbacks"] if cb["class_path"].endswith("PriorSchedule")]
    assert len(sched) == 1
    assert {key: sched[0]["init_args"][key] for key in init} == init
    kwargs = printed["model"]["init_args"]["loss_kwargs"]
    assert (kwargs["prior"], kwargs["mix"], kwargs["lam"]) == ("mix", mix, 0.0)
    assert printed["trainer"]["max_epochs"] == 650
