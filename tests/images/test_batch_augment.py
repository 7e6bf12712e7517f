"""The device pipeline's batched augmentation against torchvision's per-image ops with the same draws."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import AutoAugmentPolicy, InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.autoaugment import _apply_op

from otcls.data.batch_augment import BatchAugment
from otcls.data.transforms import CIFAR_MEAN, CIFAR_STD


def images(n: int, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth images with texture (equalize/autocontrast/sharpness see non-trivial histograms and edges)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, c, size // 4, size // 4, generator=g) * 200
    up = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return (up + torch.rand(n, c, size, size, generator=g) * 55).clamp(0, 255).to(torch.uint8)


def reference(ba: BatchAugment, img: torch.Tensor, d, k: int) -> torch.Tensor:
    """Sample ``k`` through torchvision's own per-image ops with the draws of ``d``."""
    p, s = ba.padding, ba.size
    x = TF.crop(TF.pad(img, [p, p, p, p], fill=0), int(d.crop_i[k]), int(d.crop_j[k]), s, s)
    if bool(d.flip[k]):
        x = TF.hflip(x)
    if ba.augment == "autoaugment":
        for slot in (0, 1):
            name, prob, bin_id = ba.policies[int(d.policy[k])][slot]
            if float(d.prob[k, slot]) <= prob:
                m = ba.magnitude(name, bin_id, int(d.sign[k, slot]))
                x = _apply_op(x, name, m, interpolation=InterpolationMode.NEAREST, fill=None)
    x = TF.normalize(x.float() / 255.0, list(CIFAR_MEAN), list(CIFAR_STD))
    if ba.augment == "autoaugment":
        x = TF.erase(x, int(d.cut_i[k]), int(d.cut_j[k]), ba.cut, ba.cut, torch.tensor(0.0))
    return x


@pytest.mark.parametrize("augment", ["none", "standard", "autoaugment"])
def test_batch_equals_torchvision_per_sample(augment):
    ba = BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, augment)
    x = images(400)
    d = ba.draw(len(x), torch.Generator().manual_seed(1))
    out = ba.apply(x, d)
    assert out.dtype == torch.float32 and out.shape == (400, 3, 32, 32)
    ref = torch.stack([reference(ba, x[k], d, k) if augment != "none"
                       else TF.normalize(x[k].float() / 255.0, list(CIFAR_MEAN), list(CIFAR_STD))
                       for k in range(len(x))])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_every_operation_is_exercised_and_grouped_per_sample():
    ba = BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, "autoaugment")
    d = ba.draw(400, torch.Generator().manual_seed(1))
    groups = ba.autoaugment_groups(d)
    names = {name for _, name, _, _ in groups}
    assert names == {op for sub in ba.policies for op, _, _ in sub} - {"Identity"}
    for slot in (0, 1):  # a sample is in at most one group per slot
        idx = torch.cat([i for s, _, _, i in groups if s == slot])
        assert len(idx) == len(torch.unique(idx))


def test_equalize_batched_equals_torchvision_per_image():
    from otcls.data.batch_augment import apply_operation
    x = images(32)
    torch.testing.assert_close(apply_operation(x, "Equalize", 0.0), torch.stack([TF.equalize(i) for i in x]),
                               rtol=0, atol=0)


def test_sub_policy_and_operation_frequencies_match_the_policy():
    ba = BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, "autoaugment", policy=AutoAugmentPolicy.CIFAR10)
    n = 100_000
    d = ba.draw(n, torch.Generator().manual_seed(3))
    counts = np.bincount(d.policy.numpy(), minlength=len(ba.policies))
    expected = n / len(ba.policies)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))  # multinomial, 5 sigma
    for slot in (0, 1):  # per (operation, magnitude): the policy's share sum_s p_s / 25
        want: dict = {}
        for sub in ba.policies:
            name, p, bin_id = sub[slot]
            for bit in (0, 1):
                key = (name, ba.magnitude(name, bin_id, bit))
                share = p / len(ba.policies) * 0.5  # each sign bit; unsigned ops add both halves to one key
                want[key] = want.get(key, 0.0) + share
        got = {(name, m): len(idx) / n for s, name, m, idx in ba.autoaugment_groups(d) if s == slot}
        for key, share in want.items():
            if key[0] == "Identity" or share == 0:
                continue
            sigma = np.sqrt(share * (1 - share) / n)
            assert abs(got.get(key, 0.0) - share) < 5 * sigma, (slot, key, got.get(key), share)


def test_crop_offsets_flips_and_cutout_are_uniform():
    ba = BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, "autoaugment")
    n = 90_000
    d = ba.draw(n, torch.Generator().manual_seed(4))
    for v, k in ((d.crop_i, 9), (d.crop_j, 9), (d.cut_i, 17), (d.cut_j, 17)):
        c = np.bincount(v.numpy(), minlength=k)
        assert len(c) == k and np.all(np.abs(c - n / k) < 5 * np.sqrt(n / k))
    assert abs(float(d.flip.float().mean()) - 0.5) < 5 * 0.5 / np.sqrt(n)
    assert ba.cut == 16


def test_fixed_seed_gives_the_same_batch_and_another_seed_does_not():
    ba = BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, "autoaugment")
    x = images(64)
    a = ba(x, torch.Generator().manual_seed(7))
    b = ba(x, torch.Generator().manual_seed(7))
    c = ba(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grey_images_crop_and_flip():
    mean, std = (0.286,), (0.353,)
    ba = BatchAugment(28, 2, mean, std, "standard")
    x = images(50, c=1, size=28)
    d = ba.draw(50, torch.Generator().manual_seed(0))
    out = ba.apply(x, d)
    for k in range(50):
        ref = TF.crop(TF.pad(x[k], [2, 2, 2, 2]), int(d.crop_i[k]), int(d.crop_j[k]), 28, 28)
        ref = TF.hflip(ref) if bool(d.flip[k]) else ref
        torch.testing.assert_close(out[k], TF.normalize(ref.float() / 255, list(mean), list(std)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(4, 3, 32, 32), "takes uint8 batches"),
    (torch.zeros(4, 3, 28, 28, dtype=torch.uint8), r"\(N, C, 32, 32\)"),
    (torch.zeros(4, 1, 32, 32, dtype=torch.uint8), "1 channels but mean/std give 3"),
])
def test_bad_batches_are_refused(x, match):
    with pytest.raises(ValueError, match=match):
        BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, "standard")(x)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="augment must be one of"):
        BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, "randaugment")
    with pytest.raises(ValueError, match="std > 0"):
        BatchAugment(32, 4, CIFAR_MEAN, (0.2, 0.0, 0.2))
