"""Training / evaluation transforms of the image benchmarks (torchvision)."""
from __future__ import annotations

from typing import Callable, Sequence

from torchvision import transforms as T

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


def cutout(size_fraction: float = 0.5) -> Callable:
    """Cutout (DeVries & Taylor 2017): one zero square of side ``size_fraction`` × image side, as RandomErasing."""
    area = size_fraction ** 2
    return T.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0)


def small_image_train(size: int, padding: int, mean: Sequence[float], std: Sequence[float], augment: str,
                      policy: T.AutoAugmentPolicy = T.AutoAugmentPolicy.CIFAR10) -> Callable:
    """Crop with padding + flip (``standard``); ``autoaugment`` adds AutoAugment and Cutout (the papers' CIFAR setting)."""
    if augment == "none":
        return small_image_eval(mean, std)
    ops = [T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip()]
    if augment == "autoaugment":
        ops.append(T.AutoAugment(policy))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    if augment == "autoaugment":
        ops.append(cutout())
    return T.Compose(ops)


def small_image_eval(mean: Sequence[float], std: Sequence[float]) -> Callable:
    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])


def imagenet_train(size: int, augment: str) -> Callable:
    if augment == "none":
        return imagenet_eval(size)
    ops = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.0)]
    if augment == "autoaugment":
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    return T.Compose(ops + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def imagenet_eval(size: int) -> Callable:
    return T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
