"""Long-tail profiles, seeded subsampling, stratified splits and shot groups.

Profile (Cao et al. 2019, used by RE-OT/DB-OT): class ``i`` of ``C`` keeps
``n_i = int(n_max * IF ** (-i / (C - 1)))`` images, ``IF = n_max / n_min`` the imbalance factor.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

PRIOR_VARIANTS = ("balanced", "lt", "reverse_lt")
SHOT_GROUPS = ("many", "medium", "few")


def longtail_counts(n_max: int, num_classes: int, imbalance_factor: float, reverse: bool = False) -> List[int]:
    """Per-class counts ``int(n_max * IF^(-i/(C-1)))``; ``reverse`` flips the order (head class last)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1 (n_max / n_min), got {imbalance_factor}")
    if num_classes == 1:
        return [int(n_max)]
    counts = [int(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]
    return counts[::-1] if reverse else counts


def subsample_per_class(targets: Sequence[int], counts: Sequence[int], seed: int) -> np.ndarray:
    """Indices keeping ``counts[c]`` randomly chosen (seeded) samples of every class ``c``, sorted."""
    targets = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(seed)
    keep = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(targets == c)
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} samples but the profile asks for {n}; "
                             f"lower n_max or check the dataset")
        keep.append(rng.choice(idx, size=int(n), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def stratified_split(targets: Sequence[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split into (train, val) indices.

    Each class with at least 2 samples gives ``max(1, round(val_fraction * n))`` samples to
    validation (so tail classes are represented), at most ``n - 1``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    targets = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        n_val = 0 if val_fraction == 0 or len(idx) < 2 else min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def holdout_per_class(targets: Sequence[int], exclude: Sequence[int], per_class: int, num_classes: int,
                      seed: int) -> tuple[np.ndarray, List[int]]:
    """Up to ``per_class`` seeded indices of every class among the samples *not* in ``exclude``.

    Used for a balanced validation hold-out. Returns the sorted indices and the list of classes
    that had fewer than ``per_class`` such samples (they give what they have).
    """
    if per_class < 1:
        raise ValueError(f"val_per_class must be >= 1, got {per_class}")
    targets = np.asarray(targets, dtype=np.int64)
    spare = np.ones(len(targets), dtype=bool)
    spare[np.asarray(exclude, dtype=np.int64)] = False
    rng = np.random.default_rng(seed)
    picked, short = [], []
    for c in range(num_classes):
        idx = np.flatnonzero(spare & (targets == c))
        if len(idx) < per_class:
            short.append(c)
        picked.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(picked)), short


def class_counts(targets: Sequence[int], num_classes: int) -> List[int]:
    """Number of samples of each class ``0..num_classes-1``; labels out of range raise."""
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{targets.min()}, {targets.max()}]")
    return np.bincount(targets, minlength=num_classes).tolist()


def prior_variant_indices(targets: Sequence[int], num_classes: int, imbalance_factor: float,
                          seed: int) -> Dict[str, np.ndarray]:
    """Test-set variants for shifted-prior evaluation.

    ``balanced``: the whole test set; ``lt``: subsampled with the training profile (``n_max`` = the
    smallest per-class test count, head = class 0); ``reverse_lt``: the same profile reversed.
    """
    counts = class_counts(targets, num_classes)
    n_max = min(counts)
    if n_max < 1:
        raise ValueError("every class needs at least one test sample to build test-prior variants")
    out = {"balanced": np.arange(len(np.asarray(targets)))}
    for name, rev in (("lt", False), ("reverse_lt", True)):
        prof = longtail_counts(n_max, num_classes, imbalance_factor, reverse=rev)
        prof = [max(1, n) for n in prof]
        out[name] = subsample_per_class(targets, prof, seed + (1 if rev else 0))
    return out


def shot_groups(train_counts: Sequence[int], many: int = 100, few: int = 20) -> Dict[str, List[int]]:
    """Class indices per shot group: many (> ``many`` images), medium (``few``..``many``), few (< ``few``)."""
    groups: Dict[str, List[int]] = {g: [] for g in SHOT_GROUPS}
    for c, n in enumerate(train_counts):
        groups["many" if n > many else "few" if n < few else "medium"].append(c)
    return groups
