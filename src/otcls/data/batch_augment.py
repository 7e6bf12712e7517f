"""Training augmentation of whole uint8 image batches on the training device (the ``pipeline: device`` path).

The same transforms as the per-image PIL path (:func:`otcls.data.transforms.small_image_train`): random
crop with zero padding, horizontal flip, AutoAugment (the CIFAR-10 policy by default), normalisation and
Cutout, but each batch is a few tensor operations, so small-image benchmarks need no DataLoader workers
and the GPU is not left waiting for them. Every random choice is drawn per sample: its own crop offset,
flip, AutoAugment sub-policy (with its own draws of each operation's probability and sign) and Cutout square.

AutoAugment applies torchvision's own operation (``torchvision.transforms.autoaugment._apply_op``, batched)
to the group of samples that drew the same operation and magnitude; the policies and magnitude bins are read
from ``torchvision.transforms.AutoAugment``. Equalize uses ``torchvision.transforms.v2.functional.equalize``,
the batched form of the same histogram equalisation (v1 loops over images).

The random draws are made on the host (a CPU ``torch.Generator``): grouping the samples by operation then
needs no device synchronisation, and a seeded generator gives the same batch on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.autoaugment import _apply_op
from torchvision.transforms.v2 import functional as F2

AUGMENTS = ("standard", "autoaugment", "none")


def apply_operation(x: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """AutoAugment operation ``name`` at ``magnitude`` on a uint8 batch, as torchvision's AutoAugment applies it
    to a tensor image (nearest interpolation, zero fill)."""
    if name == "Equalize":
        return F2.equalize(x)
    return _apply_op(x, name, magnitude, interpolation=InterpolationMode.NEAREST, fill=None)


@dataclass
class AugmentDraws:
    """The random choices of one batch of ``n`` samples (CPU tensors).

    ``crop_i``/``crop_j``: top-left corner of the crop in the padded image; ``flip``; ``policy``: the
    AutoAugment sub-policy index; ``prob``/``sign``: each of its two operations' uniform draw (applied
    when ``prob <= p``) and sign bit (a signed magnitude is negated when 0), as torchvision draws them;
    ``cut_i``/``cut_j``: top-left corner of the Cutout square.
    """

    crop_i: torch.Tensor
    crop_j: torch.Tensor
    flip: torch.Tensor
    policy: torch.Tensor
    prob: torch.Tensor
    sign: torch.Tensor
    cut_i: torch.Tensor
    cut_j: torch.Tensor


class BatchAugment:
    """``uint8 (N, C, H, W)`` batch -> normalised float32 batch, augmented per sample.

    Args:
        size / padding: image side and zero padding of the crop (32 / 4 for CIFAR: ``RandomCrop(32, padding=4)``).
        mean / std: per-channel normalisation (``Normalize(mean, std)`` after scaling to [0, 1]).
        augment: ``standard`` (crop + flip), ``autoaugment`` (crop + flip + AutoAugment + Cutout: the papers'
            CIFAR setting) or ``none`` (normalisation only).
        policy: AutoAugment policy (``AutoAugmentPolicy.CIFAR10``).
        cutout_fraction: side of the Cutout square as a fraction of the image side (0.5: 16 pixels of 32),
            placed wholly inside the image and filled with 0 after normalisation, as
            ``RandomErasing(p=1, scale=(f², f²), ratio=(1, 1), value=0)`` places it.
    """

    def __init__(self, size: int, padding: int, mean: Sequence[float], std: Sequence[float],
                 augment: str = "standard", policy: AutoAugmentPolicy = AutoAugmentPolicy.CIFAR10,
                 cutout_fraction: float = 0.5) -> None:
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got '{augment}'")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one value per channel and std > 0; got {list(mean)}, {list(std)}")
        if size < 1 or padding < 0:
            raise ValueError(f"size must be >= 1 and padding >= 0, got {size}, {padding}")
        self.size, self.padding, self.augment = int(size), int(padding), augment
        std_t = torch.tensor(std, dtype=torch.float32)
        # x / 255 normalised = x * scale + shift, one pass over the batch
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, -1, 1, 1)
        aa = AutoAugment(policy)
        self.policies = aa.policies
        # torchvision's magnitude bins (a private method of its AutoAugment: the only place they are defined)
        self.space = aa._augmentation_space(10, (self.size, self.size))
        self.cut = int(round(math.sqrt(cutout_fraction ** 2 * self.size ** 2)))
        # lookup tables: sub-policy x slot -> probability; sub-policy x slot x sign bit -> index into _ops
        self._ops: List[Tuple[str, float]] = []
        self._prob = torch.tensor([[p for _, p, _ in sub] for sub in self.policies])
        self._key = torch.zeros(len(self.policies), 2, 2, dtype=torch.long)
        for s, sub in enumerate(self.policies):
            for slot, (name, _, bin_id) in enumerate(sub):
                for bit in (0, 1):
                    op = (name, self.magnitude(name, bin_id, bit))
                    if op not in self._ops:
                        self._ops.append(op)
                    self._key[s, slot, bit] = self._ops.index(op)

    # -- the random choices ----------------------------------------------------------------------------
    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> AugmentDraws:
        """Every random choice of a batch of ``n`` samples, from ``generator`` (CPU)."""
        g = generator
        span = 2 * self.padding + 1
        edge = self.size - self.cut + 1
        return AugmentDraws(
            crop_i=torch.randint(span, (n,), generator=g), crop_j=torch.randint(span, (n,), generator=g),
            flip=torch.rand(n, generator=g) < 0.5,
            policy=torch.randint(len(self.policies), (n,), generator=g),
            prob=torch.rand(n, 2, generator=g), sign=torch.randint(2, (n, 2), generator=g),
            cut_i=torch.randint(edge, (n,), generator=g), cut_j=torch.randint(edge, (n,), generator=g))

    def magnitude(self, name: str, bin_id: Optional[int], sign: int) -> float:
        """The magnitude torchvision's AutoAugment gives operation ``name`` at ``bin_id`` with sign bit ``sign``."""
        magnitudes, signed = self.space[name]
        m = float(magnitudes[bin_id].item()) if bin_id is not None else 0.0
        return -m if signed and sign == 0 else m

    def autoaugment_groups(self, d: AugmentDraws) -> List[Tuple[int, str, float, torch.Tensor]]:
        """``(slot, operation, magnitude, sample indices)`` of every operation to apply, slot 0 first.

        A sample goes through its sub-policy's first operation, then its second, so applying every group of
        slot 0 before any of slot 1 keeps each sample's order; within a slot the samples that drew the same
        operation and magnitude (from any sub-policy) form one group."""
        groups = []
        for slot in (0, 1):
            applied = d.prob[:, slot] <= self._prob[d.policy, slot]
            key = self._key[d.policy, slot, d.sign[:, slot]][applied]
            members = torch.nonzero(applied).flatten()
            order = torch.argsort(key, stable=True)
            keys, counts = torch.unique_consecutive(key[order], return_counts=True)
            for k, idx in zip(keys.tolist(), torch.split(members[order], counts.tolist())):
                name, m = self._ops[k]
                if name != "Identity":
                    groups.append((slot, name, m, idx))
        return groups

    # -- the transforms --------------------------------------------------------------------------------
    def crop_flip(self, x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """``RandomCrop(size, padding)`` at per-sample corners ``(i, j)`` of the zero-padded image, then
        ``hflip`` where ``flip``: one gather from a strided view of every crop of the padded batch and of its
        mirror (the flipped crop at ``(i, j)`` is the mirror's crop at ``(i, 2·padding - j)``)."""
        n, c, s, p = x.shape[0], x.shape[1], self.size, self.padding
        padded = torch.nn.functional.pad(x, (p, p, p, p)) if p else x
        dev = x.device
        flip, i, j = flip.to(dev), i.to(dev), j.to(dev)
        both = torch.stack([padded, padded.flip(-1)])
        w = s + 2 * p
        crops = both.as_strided((2, n, c, 2 * p + 1, 2 * p + 1, s, s),
                                (n * c * w * w, c * w * w, w * w, w, 1, w, 1))
        return crops[flip.long(), torch.arange(n, device=dev), :, i, torch.where(flip, 2 * p - j, j)]

    def normalize(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``Normalize(mean, std)(x / 255)``; then multiplied by ``keep`` (the Cutout mask) when given."""
        out = x.float().mul_(self.scale.to(x.device)).add_(self.shift.to(x.device))
        return out.mul_(keep) if keep is not None else out

    def cutout_keep(self, n: int, i: torch.Tensor, j: torch.Tensor, device) -> torch.Tensor:
        """``(n, 1, size, size)`` float mask: 0 on each sample's ``cut × cut`` square at ``(i, j)``, else 1."""
        ar = torch.arange(self.size, device=device)
        i, j = i.to(device)[:, None], j.to(device)[:, None]
        rows = (ar >= i) & (ar < i + self.cut)
        cols = (ar >= j) & (ar < j + self.cut)
        return (~(rows[:, :, None] & cols[:, None, :])).unsqueeze(1).float()

    def apply(self, x: torch.Tensor, d: AugmentDraws) -> torch.Tensor:
        """The batch ``x`` (uint8 ``(N, C, size, size)``) augmented with the choices ``d``; float32, normalised."""
        if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"BatchAugment({self.size}) takes uint8 batches (N, C, {self.size}, {self.size}); "
                             f"got {x.dtype} {tuple(x.shape)}")
        if x.shape[1] != self.scale.shape[1]:
            raise ValueError(f"the batch has {x.shape[1]} channels but mean/std give {self.scale.shape[1]}")
        if self.augment == "none":
            return self.normalize(x)
        x = self.crop_flip(x, d.crop_i, d.crop_j, d.flip)
        if self.augment == "standard":
            return self.normalize(x)
        for _, name, m, idx in self.autoaugment_groups(d):
            idx = idx.to(x.device, non_blocking=True)
            x[idx] = apply_operation(x[idx], name, m)
        return self.normalize(x, self.cutout_keep(len(x), d.cut_i, d.cut_j, x.device))

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.apply(x, self.draw(len(x), generator))
