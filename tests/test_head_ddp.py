"""Whole-set coupling under a real 2-process CPU DDP (gloo) equals the single-process result."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from otcls.heads import TransportHead
from otcls.inference import gather_unique, whole_set_predict

N = 11  # does not divide by 2: the sampler pads one duplicate
KW = dict(mode="dbot", test_prior="reverse", eps=0.5, delta=0.1, tol=1e-9, max_iter=3000)


def _setup():
    torch.manual_seed(0)
    head = TransportHead(5, 3, class_counts=[30, 10, 3]).double()
    feats = torch.randn(N, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    return head, feats


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    head, feats = _setup()
    idx = torch.tensor(list(DistributedSampler(range(N), num_replicas=world, rank=rank, shuffle=False)))
    idx = idx.flip(0) if rank == 1 else idx  # order within a rank must not matter
    with torch.no_grad():
        got_idx, pred = whole_set_predict(head, head(feats[idx]), idx, **KW)
    torch.save((got_idx, pred), os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gather_unique_single_process_drops_duplicates():
    logits = torch.arange(12.0).reshape(6, 2)
    logits, idx = gather_unique(logits, torch.tensor([4, 1, 0, 4, 2, 1]))
    assert idx.tolist() == [0, 1, 2, 4]
    assert logits[:, 0].tolist() == [4.0, 2.0, 8.0, 0.0]


def test_ddp_whole_set_matches_single_process(tmp_path):
    head, feats = _setup()
    with torch.no_grad():
        ref = head.predict(head(feats), **KW)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        idx, pred = torch.load(tmp_path / f"rank{rank}.pt")
        assert idx.tolist() == list(range(N))
        assert torch.equal(pred, ref)
