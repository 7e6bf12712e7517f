"""RE-OT paper figures from otcls.ot: plans vs eps with a class prior (Fig. 1), noise→image
barycenters with and without priors (Fig. 2), and the proximal-point curve to the exact OT cost.

Writes results/figures/reot_fig1_plans.png, reot_fig2_barycenters.png, proximal_point.png and
proximal_point.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import ot as pot  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from otcls.cluster.costs import grid_cost  # noqa: E402
from otcls.ot import barycenter, deblur_prior, proximal_point, scale_prior, solve  # noqa: E402

OUT = Path("results/figures")
torch.set_default_dtype(torch.float64)


def fig1_plans(eps_values=(0.003, 0.03, 0.3, 3.0, 30.0)):
    """20 samples × 20 targets on a line, cost |x - y|², prior Q = 1 inside 4 class blocks, 0.01 outside."""
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.random(20)), np.sort(rng.random(20))
    cost = torch.tensor((x[:, None] - y[None, :]) ** 2)
    a = b = torch.full((20,), 1 / 20)
    cls = np.arange(20) // 5
    perm = rng.permutation(4)  # the prior's class structure does not follow the geometry
    Q = torch.tensor(np.where(cls[:, None] == perm[cls][None, :], 1.0, 0.01))
    plans = [solve(cost, a, b, eps=e, prior=Q, max_iter=20000).plan for e in eps_values]
    panels = [(f"eps={e:g}", p) for e, p in zip(eps_values, plans)] + [("Q~ (eps→∞)", scale_prior(Q, a, b)),
                                                                       ("exact OT", torch.tensor(pot.emd(a.numpy(), b.numpy(), cost.numpy())))]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.6))
    for ax, (title, p) in zip(axes, panels):
        ax.imshow(p.numpy(), cmap="viridis")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("RE-OT plans P_Q^eps with a class-block prior Q", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "reot_fig1_plans.png", dpi=120)
    plt.close(fig)


def fashion_item(root: str, side: int = 14) -> np.ndarray:
    from torchvision.datasets import FashionMNIST

    from otcls.data.fashion_mnist import prepare_root

    prepare_root(root)  # copies the idx files from the Debian package into root/FashionMNIST/raw
    img = np.asarray(FashionMNIST(root, train=False)[0][0], dtype=np.float64)
    f = img.shape[0] // side
    return img[: side * f, : side * f].reshape(side, f, side, f).mean((1, 3))


def fig2_barycenters(root: str, eps: float = 0.002, lams=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """Barycenter of (noise, image) with weights (λ, 1-λ): no prior, Q = P^eps, deblurring prior."""
    img = fashion_item(root)
    side = img.shape[0]
    # A floor of 1 % of the mean intensity: background pixels of exactly 0 would make the columns
    # of P^eps (and so of the prior) vanish where the noise histogram has mass: an infeasible prior.
    b2 = torch.tensor(img.ravel() + 1e-2 * img.mean())
    b2 = b2 / b2.sum()
    b1 = torch.tensor(np.random.default_rng(0).random(side * side))
    b1 = b1 / b1.sum()
    C = grid_cost((side, side))
    P = solve(C, b1, b2, eps=eps, max_iter=5000).plan
    H = torch.stack([b1, b2])
    rows = {"no prior": lambda lam: None, "Q = P^eps": lambda lam: P,
            "deblurring prior": lambda lam: deblur_prior(b1, b2, C, eps=eps, lam=lam, plan=P)}
    fig, axes = plt.subplots(len(rows), len(lams), figsize=(1.8 * len(lams), 1.9 * len(rows)))
    for r, (name, prior) in enumerate(tqdm(rows.items(), desc="Fig. 2 rows")):
        for c, lam in enumerate(lams):
            bar = barycenter(H, C, eps=eps, weights=torch.tensor([lam, 1 - lam]), prior=prior(lam),
                             max_iter=5000).barycenter
            axes[r, c].imshow(bar.reshape(side, side).numpy(), cmap="gray_r")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"λ={lam:g}", fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"Barycenters between noise (λ=1) and a Fashion-MNIST item (λ=0), eps={eps:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "reot_fig2_barycenters.png", dpi=120)
    plt.close(fig)


def proximal_curve(eps: float = 0.5, n_steps: int = 30):
    """``<C, P(t)>`` of the proximal-point iteration against the exact OT cost (POT's network simplex)."""
    rng = np.random.default_rng(1)
    xs, ys = rng.random((30, 2)), rng.random((25, 2))
    a, b = rng.dirichlet(np.ones(30)), rng.dirichlet(np.ones(25))
    cost = ((xs[:, None] - ys[None]) ** 2).sum(-1)
    exact = float(pot.emd2(a, b, cost))
    costs = proximal_point(torch.tensor(cost), torch.tensor(a), torch.tensor(b), eps=eps, n_steps=n_steps).costs
    gap = costs.numpy() - exact
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(np.arange(1, n_steps + 1), np.maximum(gap, 1e-16), marker="o", ms=3)
    ax.set_xlabel("proximal step t (entropic OT at eps/(t+1))")
    ax.set_ylabel("<C, P(t)> − exact OT cost")
    ax.set_title(f"Proximal point, eps={eps:g}, exact cost {exact:.5f} (POT emd2)", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "proximal_point.png", dpi=120)
    plt.close(fig)
    steps = [1, 2, 5, 10, 20, n_steps]
    lines = ["| step t | <C,P(t)> | gap to exact |", "|---|---|---|"]
    lines += [f"| {t} | {costs[t - 1].item():.6f} | {gap[t - 1]:.2e} |" for t in steps]
    (OUT / "proximal_point.md").write_text(f"exact OT cost (POT emd2): {exact:.6f}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fmnist-root", default="data/fashion-mnist")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    fig1_plans()
    fig2_barycenters(args.fmnist_root)
    proximal_curve()
    print(f"wrote {OUT}/reot_fig1_plans.png, reot_fig2_barycenters.png, proximal_point.png")


if __name__ == "__main__":
    main()
