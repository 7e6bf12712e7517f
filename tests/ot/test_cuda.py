"""Every solver on CUDA gives the plan it gives on the CPU (skipped without a GPU; experiments/gpu/check.sh runs it)."""
from __future__ import annotations

import pytest
import torch

from otcls.ot import SOLVERS, solve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def problem(dtype):
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(4, 64, 10, generator=g, dtype=dtype)
    a = torch.full((4, 64), 1 / 64, dtype=dtype)
    b = torch.softmax(torch.randn(4, 10, generator=g, dtype=dtype), -1)
    return cost, a, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind, method", [(k, m) for k, ms in SOLVERS.items() for m in ms])
def test_solver_on_cuda_equals_cpu(kind, method, dtype):
    cost, a, b = problem(dtype)
    kw = dict(eps=0.1, method=method)
    if kind == "balanced":
        kw["b"] = b
    elif kind == "bounded":
        kw.update(lower=0.8 * b, upper=1.2 * b)
    cpu = solve(cost, a, **kw)
    gpu = solve(cost.cuda(), a.cuda(), **{k: v.cuda() if torch.is_tensor(v) else v for k, v in kw.items()})
    assert gpu.plan.device.type == "cuda" and bool(gpu.converged.all()) == bool(cpu.converged.all())
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(gpu.plan.cpu(), cpu.plan, rtol=1e-3 if dtype == torch.float32 else 1e-7, atol=tol)


def test_gradients_on_cuda_equal_cpu():
    cost, a, b = problem(torch.float64)
    grads = []
    for dev in ("cpu", "cuda"):
        c = cost.to(dev).requires_grad_(True)
        (solve(c, a.to(dev), b.to(dev), eps=0.1).plan * c).sum().backward()
        grads.append(c.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-10)
