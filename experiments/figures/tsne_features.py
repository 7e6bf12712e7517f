"""RE-OT paper Fig. 4: t-SNE of a trained image model's train and test features, with the class
barycenters computed from the OT coupling (label → feature barycentric projection).

The model is the demo's RE-OT run by default: ``<runs>/reot_ratio/seed0/checkpoints/best-*.ckpt``
(chosen by validation), else ``last.ckpt``, with ``<runs>`` = results/demo/runs (``make demo``).
The coupling is the entropic OT plan between samples (``a = 1/n``) and classes (``b`` = the
split's class ratio) with cost ``-logits`` and ``eps = 1``; barycenter ``j`` is
``Σ_i P_ij f_i / Σ_i P_ij`` (:func:`otcls.ot.class_barycenters`). Head classes (top third by
training count) are drawn as stars, tail classes (bottom third) as triangles.
Writes tsne_features.png into the output folder (default results/figures).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from tqdm import tqdm  # noqa: E402

from otcls.data.transforms import FMNIST_MEAN, FMNIST_STD, small_image_eval  # noqa: E402
from otcls.ot import class_barycenters, solve  # noqa: E402

OUT = Path("results/figures")
RUNS = Path("results/demo/runs")
DEMO_HINT = "run `make demo` (it trains results/demo/runs/<method>/seed<s>/checkpoints/)"


class MissingInput(FileNotFoundError):
    """A file the figure needs does not exist; the message says which command makes it."""


def demo_checkpoint(runs: Path = RUNS, method: str = "reot_ratio", seed: int = 0) -> Path:
    """``<runs>/<method>/seed<seed>/checkpoints/best-*.ckpt`` (the newest if several), else ``last.ckpt``."""
    folder = Path(runs) / method / f"seed{seed}" / "checkpoints"
    best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise MissingInput(f"no checkpoint in {folder}/ (best-*.ckpt or last.ckpt): {DEMO_HINT}, "
                       "or pass --checkpoint PATH / --runs DIR (make figures CKPT=PATH / FIGURES_RUNS=DIR)")


@torch.no_grad()
def embed(model, ds, idx: np.ndarray, batch: int = 256, desc: str = "features"):
    """Backbone features and logits of ``ds[idx]`` under the Fashion-MNIST evaluation transform."""
    tf = small_image_eval(FMNIST_MEAN, FMNIST_STD)
    feats, logits = [], []
    for s in tqdm(range(0, len(idx), batch), desc=desc, leave=False):
        x = torch.stack([tf(ds[int(i)][0]) for i in idx[s:s + batch]])
        f = model.features(x)
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(feats).double(), torch.cat(logits).double()


def coupling_barycenters(feats, logits, y, n_classes: int):
    """Class barycenters of the entropic plan samples → classes (NaN rows for classes absent from ``y``)."""
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


def load_fmnist(root: str):
    """Train and test FashionMNIST datasets from ``root`` (or the Debian package's copy)."""
    from torchvision.datasets import FashionMNIST

    from otcls.data.fashion_mnist import prepare_root

    try:
        prepare_root(root)
    except ValueError as err:  # its message says how to install the files
        raise MissingInput(f"{err} (`make data-fmnist` installs the Debian package)") from err
    return FashionMNIST(root, train=True), FashionMNIST(root, train=False)


def make_figure(out: Path = OUT, checkpoint: Optional[Path] = None, runs: Path = RUNS,
                fmnist_root: str = "data/fashion-mnist", n: int = 1500) -> Path:
    """Write ``out/tsne_features.png``; raises :class:`MissingInput` without checkpoint or data."""
    ckpt = Path(checkpoint) if checkpoint is not None else demo_checkpoint(runs)
    if not ckpt.is_file():
        raise MissingInput(f"checkpoint {ckpt} does not exist ({DEMO_HINT} for the default one)")
    train_ds, test_ds = load_fmnist(fmnist_root)
    from otcls.tasks.image import ImageClassifier

    model = ImageClassifier.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
    counts = np.asarray(model.hparams.class_counts or [1] * model.hparams.num_classes, dtype=float)
    C = len(counts)
    rng = np.random.default_rng(0)
    splits = {}
    for name, ds, prior in [("train", train_ds, counts), ("test", test_ds, np.ones(C))]:
        idx = subsample(ds.targets.numpy(), prior, n, rng)
        feats, logits = embed(model, ds, idx, desc=f"{name} features")
        y = ds.targets.numpy()[idx]
        splits[name] = (feats, y, coupling_barycenters(feats, logits, y, C))
    allf = torch.cat([torch.cat([f, b[~torch.isnan(b[:, 0])]]) for f, _, b in splits.values()]).numpy()
    # sklearn requires perplexity < n_samples; 30 is its default for the full-size figure.
    perplexity = min(30.0, (len(allf) - 1) / 3)
    print(f"t-SNE of {len(allf)} points (perplexity {perplexity:g}) ...", flush=True)
    emb = TSNE(2, init="pca", random_state=0, perplexity=perplexity).fit_transform(allf)
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "tsne_features.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out}/tsne_features.png")
    return out / "tsne_features.png"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="ImageClassifier checkpoint (default: the demo's reot_ratio seed0 run under --runs)")
    p.add_argument("--runs", type=Path, default=RUNS, help="results folder with <method>/seed<s>/checkpoints/ "
                                                           "(default %(default)s)")
    p.add_argument("--fmnist-root", default="data/fashion-mnist")
    p.add_argument("--n", type=int, default=1500, help="samples per split")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (default %(default)s)")
    args = p.parse_args(argv)
    try:
        make_figure(args.out, args.checkpoint, args.runs, args.fmnist_root, args.n)
    except MissingInput as err:
        print(f"tsne_features: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
