"""Write a small long-tailed toy dataset in the layout ``NpzDataModule`` reads (to try the example end to end).

4 classes of 12×12 grey images, noise whose brightness grows with the class (with overlap); training counts 200 / 80 / 30 / 12,
a balanced test set (25 a class) and a reverse long-tailed one (6 / 15 / 30 / 60).

    python examples/custom_data/make_toy_data.py --out data/toy_lt.npz
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

import numpy as np

TRAIN_COUNTS = (200, 80, 30, 12)
TEST_COUNTS = {"balanced": (25, 25, 25, 25), "reverse": (6, 15, 30, 60)}


def toy_images(counts: Sequence[int], rng: np.random.Generator, size: int = 12) -> tuple:
    """uint8 images of shape (Σcounts, size, size) and their labels: class c is noise brightened by 30·c plus a
    random brightness of up to 45 per image, so neighbouring classes overlap."""
    labels = np.repeat(np.arange(len(counts)), counts)
    brightness = 30 * labels + rng.integers(0, 45, size=len(labels))
    images = rng.integers(0, 100, size=(len(labels), size, size)) + brightness[:, None, None]
    order = rng.permutation(len(labels))
    return images[order].clip(0, 255).astype(np.uint8), labels[order]


def write_toy_data(path: str, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    arrays = {}
    arrays["train_images"], arrays["train_labels"] = toy_images(TRAIN_COUNTS, rng)
    for name, counts in TEST_COUNTS.items():
        arrays[f"test_{name}_images"], arrays[f"test_{name}_labels"] = toy_images(counts, rng)
    np.savez_compressed(path, **arrays)
    return path


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/toy_lt.npz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    print(write_toy_data(args.out, args.seed))


if __name__ == "__main__":
    main()
