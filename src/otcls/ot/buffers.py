"""Large CPU buffers that the solvers fill outside autograd, allocated on transparent huge pages.

A fresh buffer is paid for at its first write, one page fault per 4 KiB page: writing a new 52 MB
plan took ~14 ms on the 2-core development machine, as long as building the kernel in it. NumPy's
allocator asks Linux for transparent huge pages for arrays of 4 MiB and more (``madvise(MADV_HUGEPAGE)``,
on by default), one fault per 2 MiB: the same write took ~3.5 ms there. So these buffers are NumPy
arrays shared with torch (``torch.from_numpy``, no copy); the peers' NumPy outputs (POT's plans) get
the same pages. Elsewhere (other devices, small buffers, dtypes NumPy lacks) it is ``torch.empty``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# NumPy's own threshold for asking for huge pages
HUGE_BYTES = 4 * 2 ** 20
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor; on the CPU and at least :data:`HUGE_BYTES`, backed by huge pages."""
    shape = tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 0
    if torch.device(device).type != "cpu" or dtype not in _NUMPY_DTYPES or nbytes < HUGE_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.from_numpy(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """:func:`empty` with ``x``'s shape, dtype and device."""
    return empty(x.shape, x.dtype, x.device)
