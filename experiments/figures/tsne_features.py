"""RE-OT paper Fig. 4: t-SNE of a trained image model's train and test features, with the class
barycenters computed from the OT coupling (label → feature barycentric projection).

The coupling is the entropic OT plan between samples (``a = 1/n``) and classes (``b`` = the
split's class ratio) with cost ``-logits`` and ``eps = 1``; barycenter ``j`` is
``Σ_i P_ij f_i / Σ_i P_ij`` (:func:`otcls.ot.class_barycenters`). Head classes (top third by
training count) are drawn as stars, tail classes (bottom third) as triangles.
Writes results/figures/tsne_features.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from torchvision.datasets import FashionMNIST  # noqa: E402

from otcls.data.fashion_mnist import prepare_root  # noqa: E402
from otcls.data.transforms import FMNIST_MEAN, FMNIST_STD, small_image_eval  # noqa: E402
from otcls.ot import class_barycenters, solve  # noqa: E402

OUT = Path("results/figures")


def newest_checkpoint(runs: Path = Path("runs/fmnist_lt")) -> Path:
    ckpts = sorted(runs.glob("**/*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"no checkpoint under {runs}/: train the Fashion-MNIST demo first (see docs for the "
                         "image task, e.g. `otcls fit --config configs/fmnist_lt/...`) or pass --checkpoint PATH")
    return ckpts[-1]


@torch.no_grad()
def embed(model, ds, idx: np.ndarray, batch: int = 256):
    tf = small_image_eval(FMNIST_MEAN, FMNIST_STD)
    feats, logits = [], []
    for s in range(0, len(idx), batch):
        x = torch.stack([tf(ds[int(i)][0]) for i in idx[s:s + batch]])
        f = model.features(x)
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(feats).double(), torch.cat(logits).double()


def coupling_barycenters(feats, logits, y, n_classes: int):
    ratio = torch.bincount(torch.as_tensor(y), minlength=n_classes).double()
    keep = ratio > 0
    a = torch.full((len(y),), 1.0 / len(y), dtype=torch.float64)
    plan = solve(-logits[:, keep], a, ratio[keep] / ratio.sum(), eps=1.0, max_iter=5000).plan
    bary = torch.full((n_classes, feats.shape[1]), float("nan"), dtype=torch.float64)
    bary[keep] = class_barycenters(plan, feats)
    return bary


def subsample(targets: np.ndarray, counts: np.ndarray, n: int, rng) -> np.ndarray:
    """About ``n`` indices with classes in proportion to ``counts``."""
    quota = np.maximum(1, np.round(n * counts / counts.sum())).astype(int)
    return np.concatenate([rng.choice(np.flatnonzero(targets == c), min(q, (targets == c).sum()), replace=False)
                           for c, q in enumerate(quota)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="default: newest under runs/fmnist_lt/")
    p.add_argument("--fmnist-root", default="data/fashion-mnist")
    p.add_argument("--n", type=int, default=1500, help="samples per split")
    args = p.parse_args(argv)
    ckpt = args.checkpoint or newest_checkpoint()
    if not ckpt.is_file():
        raise SystemExit(f"checkpoint {ckpt} does not exist")
    from otcls.tasks.image import ImageClassifier

    model = ImageClassifier.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
    counts = np.asarray(model.hparams.class_counts or [1] * model.hparams.num_classes, dtype=float)
    C = len(counts)
    prepare_root(args.fmnist_root)
    rng = np.random.default_rng(0)
    splits = {}
    for name, train, prior in [("train", True, counts), ("test", False, np.ones(C))]:
        ds = FashionMNIST(args.fmnist_root, train=train)
        idx = subsample(ds.targets.numpy(), prior, args.n, rng)
        feats, logits = embed(model, ds, idx)
        y = ds.targets.numpy()[idx]
        splits[name] = (feats, y, coupling_barycenters(feats, logits, y, C))
    allf = torch.cat([torch.cat([f, b[~torch.isnan(b[:, 0])]]) for f, _, b in splits.values()]).numpy()
    emb = TSNE(2, init="pca", random_state=0, perplexity=30).fit_transform(allf)
    order = np.argsort(-counts)
    head, tail = set(order[: C // 3].tolist()), set(order[-(C // 3):].tolist())
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    start = 0
    for ax, (name, (feats, y, bary)) in zip(axes, splits.items()):
        pts = emb[start:start + len(y)]
        ok = np.flatnonzero(~torch.isnan(bary[:, 0]).numpy())
        bpts = emb[start + len(y):start + len(y) + len(ok)]
        start += len(y) + len(ok)
        ax.scatter(pts[:, 0], pts[:, 1], c=y, cmap="tab10", s=4, alpha=0.5, vmin=0, vmax=C - 1)
        for (bx, by), c in zip(bpts, ok):
            marker = "*" if c in head else ("^" if c in tail else "o")
            ax.scatter(bx, by, marker=marker, s=220, c=[plt.cm.tab10(c / max(C - 1, 1))], edgecolors="k")
            ax.annotate(str(c), (bx, by), fontsize=8, ha="center", va="center")
        ax.set_title(f"{name} features ({len(y)}) + coupling barycenters\n★ head  ▲ tail  ● medium", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE, checkpoint {ckpt}", fontsize=8)
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "tsne_features.png", dpi=120)
    print(f"wrote {OUT}/tsne_features.png")


if __name__ == "__main__":
    main()
