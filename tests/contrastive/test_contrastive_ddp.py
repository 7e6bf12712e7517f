"""Contrastive losses under 2-process gloo DDP: views gathered from every rank with gradient give the
loss and, after DDP's gradient mean, the gradient of one process on the whole batch."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from otcls.losses import build_loss
from otcls.tasks.common import gather_with_grad

from ..test_head_ddp import _free_port

N = 10  # global batch, 5 per rank
LOSSES = [("nt_xent", {}), ("supcon", {}),
          ("reot_contrastive", {"prior": "frequency", "target": "class", "coupling": "balanced"})]


def _setup():
    g = torch.Generator().manual_seed(0)
    proj = torch.nn.Linear(6, 4).double()
    with torch.no_grad():
        proj.weight.copy_(torch.randn(4, 6, generator=g, dtype=torch.float64))
        proj.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
    x1 = torch.randn(N, 6, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(N, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1, 0, 2])
    return proj, x1, x2, y


def _loss_and_grad(name, kwargs, proj, x1, x2, y, gather):
    loss_fn = build_loss(name, num_classes=3, **kwargs)
    proj.zero_grad()
    z1, z2, labels = gather(proj(x1), proj(x2), y)
    loss = loss_fn(z1, z2, labels)
    loss.backward()
    return loss.detach(), proj.weight.grad.clone()


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    proj, x1, x2, y = _setup()
    part = slice(rank * N // world, (rank + 1) * N // world)
    results = {}
    for name, kwargs in LOSSES:
        loss, grad = _loss_and_grad(name, kwargs, proj, x1[part], x2[part], y[part], gather_with_grad)
        dist.all_reduce(grad)  # what DDP does to parameter gradients: the mean over ranks
        results[name] = (loss, grad / world)
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_gather_is_the_identity_in_one_process():
    t = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(t)[0] is t


@pytest.mark.timeout(300)
def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path):
    proj, x1, x2, y = _setup()
    ref = {name: _loss_and_grad(name, kw, proj, x1, x2, y, lambda *t: t) for name, kw in LOSSES}
    local = {name: _loss_and_grad(name, kw, proj, x1[:5], x2[:5], y[:5], lambda *t: t) for name, kw in LOSSES}
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name, _ in LOSSES:
            assert torch.allclose(got[name][0], ref[name][0], atol=1e-12), (name, rank)
            assert torch.allclose(got[name][1], ref[name][1], atol=1e-10), (name, rank)
            assert not torch.allclose(local[name][0], ref[name][0])  # contrasting within a rank differs
