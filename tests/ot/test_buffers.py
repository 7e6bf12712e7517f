"""Solver buffers on transparent huge pages, the shared Kᵀ buffer of a chunked batch, and the host-side
convergence schedule."""
import math
import resource
import sys
from pathlib import Path

import numpy as np
import ot as pot
import pytest
import torch

from otcls.ot import buffers, solve
from otcls.ot.fixed_point import _Schedule
from otcls.ot.products import Products


def _huge_pages_on() -> bool:
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return sys.platform == "linux" and mode.exists() and "[never]" not in mode.read_text()


def _page_faults(fn) -> int:
    """Minor page faults of this process while ``fn`` runs."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not _huge_pages_on(), reason="transparent huge pages are off on this machine")
def test_first_write_into_a_large_buffer_takes_few_page_faults():
    """64 MiB are 16,384 pages of 4 KiB. On huge pages (or memory the allocator already holds) the first
    write takes 32 faults, plus at most ~1,000 small ones where the array's ends are not 2 MiB-aligned."""
    x = buffers.empty((16, 1024, 1024), torch.float32, torch.device("cpu"))
    faults = _page_faults(lambda: x.fill_(1.0))
    assert x.shape == (16, 1024, 1024) and x.dtype == torch.float32 and float(x.sum()) == 16 * 2 ** 20
    assert faults < 16384 // 4, faults


@pytest.mark.parametrize("shape, dtype", [((3, 5), torch.float32), ((2, 1024, 1024), torch.bfloat16),
                                          ((2, 1024, 1024), torch.int64)])
def test_small_or_unsupported_buffers_are_plain_torch_tensors(shape, dtype):
    x = buffers.empty(shape, dtype, torch.device("cpu"))
    assert x.shape == shape and x.dtype == dtype


def test_products_store_the_transpose_in_the_given_buffer():
    g = torch.Generator().manual_seed(0)
    K = torch.rand(3, 70, 40, generator=g, dtype=torch.float64)
    out = torch.empty(3, 40, 70, dtype=torch.float64)
    prod = Products(K, out)
    assert prod.KT.data_ptr() == out.data_ptr()
    u, v = torch.rand(3, 70, generator=g, dtype=torch.float64), torch.rand(3, 40, generator=g, dtype=torch.float64)
    torch.testing.assert_close(prod.vecmat(u), torch.einsum("bij,bi->bj", K, u))
    torch.testing.assert_close(prod.matvec(v), torch.einsum("bij,bj->bi", K, v))


def test_chunked_batch_of_large_kernels_equals_unchunked_and_pot():
    """Five 512×512 float32 problems (1 MiB kernels): chunks of 4 and 1 share a 4 MiB Kᵀ buffer and write
    into one 5 MiB plan, both on huge pages; same plans as one chunk and as POT."""
    g = torch.Generator().manual_seed(1)
    C = torch.rand(5, 512, 512, generator=g)
    a = torch.full((5, 512), 1 / 512)
    b = torch.rand(5, 512, generator=g) + 0.5
    b = b / b.sum(-1, keepdim=True)
    kw = dict(eps=0.5, tol=1e-6, max_iter=2000)
    chunked = solve(C, a, b, **kw)  # automatic chunks: 8 MiB of K and Kᵀ -> 4 problems
    whole = solve(C, a, b, chunk_size=5, **kw)
    assert chunked.method == whole.method == "sinkhorn" and bool(chunked.converged.all())
    torch.testing.assert_close(chunked.plan, whole.plan, atol=0, rtol=0)
    assert torch.equal(chunked.n_iter, whole.n_iter)
    b64 = b[4].double() / b[4].double().sum()  # masses equal in float64, or POT cannot reach its threshold
    ref = pot.sinkhorn(a[4].double().numpy(), b64.numpy(), C[4].double().numpy(), 0.5, stopThr=1e-9)
    np.testing.assert_allclose(chunked.plan[4].double().numpy(), ref, atol=1e-8, rtol=0)


def test_schedule_by_hand():
    """tol 1e-6, checks at most 10 steps apart. Step 10: problem 1 (err 1e-7) stops; problem 0 has no rate
    yet and is due 10 steps later. Step 20: err 2e-5, i.e. log rate log(0.02)/10 per step, predicts tol after
    ceil(log(1e-6 / 2e-5) / (log(0.02) / 10)) = ceil(7.66) = 8 more steps."""
    s = _Schedule(2, tol=1e-6, span=10, first=10, max_iter=1000)
    was, due, log_rate, seen = s.update(10, np.array([1e-3, 1e-7]))
    assert was.tolist() == [True, True] and due.tolist() == [True, True] and np.isnan(log_rate).all()
    assert s.active.tolist() == [True, False] and s.upcoming() == 20
    _, due, log_rate, seen = s.update(20, np.array([2e-5, 0.5]))
    assert due.tolist() == [True, False] and seen.tolist() == [True, False]
    assert math.isclose(log_rate[0], math.log(0.02) / 10)
    assert s.active.tolist() == [True, False] and s.upcoming() == 28
    s.update(28, np.array([9e-7, 0.5]))
    assert s.active.tolist() == [False, False] and s.upcoming() == 1001
