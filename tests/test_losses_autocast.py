"""Losses under mixed precision (``torch.autocast``, as Lightning's ``bf16-mixed`` / ``16-mixed`` run them).

The logits come from a linear layer run under autocast, as a bf16-mixed model's do (bf16 logits), and
are compared with the same layer and loss run in float32. Softmax CE is the noise floor: its error is
the logits' own rounding. The second test separates the loss's own error from the model's: on the very
logits the mixed-precision model produced, the loss must equal its float32 value, and its gradient must
be that float32 gradient rounded to the logits' type (relative error at most the type's unit roundoff).
"""
import pytest
import torch

from otcls.losses import build_loss

C, B, D = 10, 128, 64
# CIFAR-10-LT at imbalance factor 200: n_j = floor(5000 · 200^(-j/9)), 5000 down to 25
COUNTS = [int(5000 * 200 ** (-j / (C - 1))) for j in range(C)]
LOSSES = {
    "ce": ("ce", {}),
    "balanced_softmax": ("balanced_softmax", {}),
    "reot_ratio": ("reot", {"prior": "ratio", "lam": 1.0}),
    "reot_sinkhorn": ("reot", {"prior": "ratio", "lam": 0.5, "sinkhorn": True}),
    # the cifar10_lt dbot.yaml setting (the paper's), and the defaults
    "dbot": ("dbot", {"tau": 1.0, "delta": 0.2, "iters": 5, "ratio": "train", "prior": "counts"}),
    "dbot_default": ("dbot", {}),
}
# logits of std ~3 (range about ±10): a trained 10-class model's scale
LOGIT_SCALE = 3.0


def _model(seed: int):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(D, C)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(C, D, generator=g) * LOGIT_SCALE / D ** 0.5)
        lin.bias.copy_(0.1 * torch.randn(C, generator=g))
    x = torch.randn(B, D, generator=g)
    y = torch.multinomial(torch.tensor(COUNTS, dtype=torch.float), B, replacement=True, generator=g)
    return lin, x, y


def _loss(name):
    kind, kw = LOSSES[name]
    return build_loss(kind, num_classes=C, class_counts=COUNTS, **kw)


def _value_and_grad(loss_fn, logits, y):
    value = loss_fn(logits, y)
    (grad,) = torch.autograd.grad(value, logits)
    return value, grad


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(LOSSES))
def test_bf16_mixed_loss_and_gradient_within_half_percent_of_float32(name, seed):
    lin, x, y = _model(seed)
    loss_fn = _loss(name)
    z32 = lin(x).detach().requires_grad_()
    v32, g32 = _value_and_grad(loss_fn, z32, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        zb = lin(x)
        vb, gb = _value_and_grad(loss_fn, zb, y)
    assert zb.dtype == torch.bfloat16  # the realistic case: the model hands the loss bf16 logits
    assert vb.dtype == torch.float32 and gb.dtype == torch.bfloat16
    assert _rel(vb, v32) < 5e-3, f"{name}: loss {vb.item()} vs float32 {v32.item()}"
    assert _rel(gb, g32) < 5e-3, f"{name}: gradient {_rel(gb, g32):.3%} off float32"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(LOSSES))
def test_autocast_loss_adds_no_error_of_its_own(name, dtype):
    lin, x, y = _model(0)
    loss_fn = _loss(name)
    with torch.autocast("cpu", dtype=dtype):
        zh = lin(x)
        vh, gh = _value_and_grad(loss_fn, zh, y)
    assert zh.dtype == dtype
    # float32 reference on the same (rounded) logits, autocast off
    z32 = zh.detach().float().requires_grad_()
    v32, g32 = _value_and_grad(loss_fn, z32, y)
    assert vh.dtype == torch.float32
    assert _rel(vh, v32) <= 1e-6, f"{name}: loss {vh.item()} vs float32 {v32.item()} on the same logits"
    # the gradient reaches the logits rounded to their type: |round(g) - g| <= u·|g| elementwise
    unit_roundoff = torch.finfo(dtype).eps / 2  # 2^-8 (bf16), 2^-11 (fp16)
    assert _rel(gh, g32) <= unit_roundoff * (1 + 1e-3), f"{name}: gradient {_rel(gh, g32):.3%} off float32"


def test_helpers_cast_only_narrow_types_and_switch_autocast_off():
    from otcls.losses.base import autocast_off, full_precision

    for dtype in (torch.bfloat16, torch.float16):
        assert full_precision(torch.ones(2, dtype=dtype)).dtype == torch.float32
    for dtype in (torch.float32, torch.float64, torch.long):
        t = torch.ones(2, dtype=dtype)
        assert full_precision(t) is t
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with autocast_off("cpu"):
            assert (a @ a).dtype == torch.float32
    with autocast_off(torch.device("meta")):  # no autocast on this device type: a no-op
        pass


def test_ot_inference_inside_autocast_equals_float32():
    """``predict``-time OT (RE-OT and DB-OT couplings) called inside a bf16 autocast region gives the float32 scores."""
    from otcls.inference.scores import ot_scores

    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2000, 10, generator=g)
    prior = torch.full((10,), 0.1)
    for mode in ("reot", "dbot"):
        ref = ot_scores(logits, prior, mode=mode)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = ot_scores(logits, prior, mode=mode)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), mode
