"""RE-OT paper figures from otcls.ot: plans vs eps with a class prior (Fig. 1), noise→photograph
barycenters with and without priors (Fig. 2), and the proximal-point curve to the exact OT cost.

Writes reot_fig1_plans.png, reot_fig2_barycenters.png, reot_fig2_sharpness.json,
proximal_point.png and proximal_point.md into the output folder (default results/figures).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Sequence

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
DTYPE = torch.float64
ROWS = ("no prior", "Q = P^eps", "deblurring prior")
# Fig. 2 defaults: at 32×32 and eps 0.008 (kernel std sqrt(eps/2) ≈ 1.9 pixels) the entropic
# barycenters are visibly blurred, and the 15 barycenters take about a minute on 2 CPU cores
# (73 s measured with another job on the same cores).
FIG2_IMAGE, FIG2_SIDE, FIG2_EPS = "flower.jpg", 32, 0.008


def fig1_plans(out: Path = OUT, eps_values=(0.003, 0.03, 0.3, 3.0, 30.0)) -> Path:
    """20 samples × 20 targets on a line, cost |x - y|², prior Q = 1 inside 4 class blocks, 0.01 outside."""
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.random(20)), np.sort(rng.random(20))
    cost = torch.tensor((x[:, None] - y[None, :]) ** 2, dtype=DTYPE)
    a = b = torch.full((20,), 1 / 20, dtype=DTYPE)
    cls = np.arange(20) // 5
    perm = rng.permutation(4)  # the prior's class structure does not follow the geometry
    Q = torch.tensor(np.where(cls[:, None] == perm[cls][None, :], 1.0, 0.01), dtype=DTYPE)
    plans = [solve(cost, a, b, eps=e, prior=Q, max_iter=20000).plan for e in eps_values]
    exact = torch.tensor(pot.emd(a.numpy(), b.numpy(), cost.numpy()))
    panels = [(f"eps={e:g}", p) for e, p in zip(eps_values, plans)]
    panels += [("Q~ (eps→∞)", scale_prior(Q, a, b)), ("exact OT", exact)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.6))
    for ax, (title, p) in zip(axes, panels):
        ax.imshow(p.numpy(), cmap="viridis")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("RE-OT plans P_Q^eps with a class-block prior Q", fontsize=9)
    fig.tight_layout()
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / "reot_fig1_plans.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_photo(name: str = "flower.jpg", side: int = 32) -> np.ndarray:
    """scikit-learn's sample photograph ``name`` as a grey ``side × side`` array in [0, 1] (centre square crop)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image(name)).convert("L")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    return np.asarray(img.resize((side, side), Image.LANCZOS), dtype=np.float64) / 255.0


def histograms(img: np.ndarray, seed: int = 0):
    """``(noise, photo)``: a uniform-random histogram and the image as a histogram, both of mass 1."""
    # A floor of 1 % of the mean intensity: pixels of exactly 0 would make the columns of P^eps
    # (and so of the prior) vanish where the noise histogram has mass, an infeasible prior.
    photo = torch.tensor(img.ravel() + 1e-2 * img.mean(), dtype=DTYPE)
    noise = torch.tensor(np.random.default_rng(seed).random(img.size), dtype=DTYPE)
    return noise / noise.sum(), photo / photo.sum()


def sharpness(hist: torch.Tensor, shape: Sequence[int]) -> Dict[str, float]:
    """Gradient energy and Shannon entropy (nats) of a histogram on a 2-d grid.

    Gradient energy: mean squared difference of neighbouring pixels (both axes, summed) of the
    image rescaled to [0, 1], as ``imshow`` shows it; blur lowers it. Entropy of ``hist / sum``;
    blur spreads mass and raises it.
    """
    x = hist.detach().double().reshape(*shape)
    span = x.max() - x.min()
    x = (x - x.min()) / span if span > 0 else torch.zeros_like(x)
    energy = x.diff(dim=0).pow(2).mean() + x.diff(dim=1).pow(2).mean()
    p = hist.detach().double().flatten()
    p = p / p.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"gradient_energy": float(energy), "entropy": float(entropy)}


def barycenter_rows(img: np.ndarray, eps: float, lams: Sequence[float], rows: Sequence[str] = ROWS,
                    tol: float = 1e-3, max_iter: int = 3000, progress: bool = True) -> Dict[str, List[dict]]:
    """Barycenters of (noise, photo) with weights ``(λ, 1 - λ)`` for each row's prior and each λ.

    Rows: ``"no prior"`` (entropic barycenter), ``"Q = P^eps"`` (prior = the entropic plan from noise
    to photo), ``"deblurring prior"`` (:func:`otcls.ot.deblur_prior`, RE-OT Eq. 10). Each entry:
    ``{"lam", "barycenter" (d,), "n_iter", "error", "seconds"}``.
    """
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; choose from {list(ROWS)}")
    noise, photo = histograms(img)
    C = grid_cost(img.shape, dtype=DTYPE)
    H = torch.stack([noise, photo])
    plan = solve(C, noise, photo, eps=eps, tol=1e-9, max_iter=20000).plan if set(rows) & set(ROWS[1:]) else None
    priors = {"no prior": lambda lam: None, "Q = P^eps": lambda lam: plan,
              "deblurring prior": lambda lam: deblur_prior(noise, photo, C, eps=eps, lam=lam, plan=plan)}
    out = {r: [] for r in rows}
    jobs = [(r, lam) for r in rows for lam in lams]
    for r, lam in tqdm(jobs, desc="Fig. 2 barycenters", disable=not progress):
        t0 = time.perf_counter()
        res = barycenter(H, C, eps=eps, weights=torch.tensor([lam, 1.0 - lam], dtype=DTYPE),
                         prior=priors[r](lam), tol=tol, max_iter=max_iter)
        out[r].append({"lam": float(lam), "barycenter": res.barycenter, "n_iter": int(res.n_iter),
                       "error": float(res.error), "seconds": time.perf_counter() - t0})
    return out


def fig2_barycenters(out: Path = OUT, image: str = FIG2_IMAGE, side: int = FIG2_SIDE,
                     eps: float = FIG2_EPS, lams=(0.0, 0.25, 0.5, 0.75, 1.0), tol: float = 1e-3,
                     progress: bool = True) -> dict:
    """RE-OT Fig. 2: the figure, ``reot_fig2_sharpness.json`` and a printed table; returns the JSON content."""
    t0 = time.perf_counter()
    img = load_photo(image, side)
    shape = img.shape
    noise, photo = histograms(img)
    rows = barycenter_rows(img, eps, lams, tol=tol, progress=progress)
    fig, axes = plt.subplots(len(rows) + 1, len(lams), figsize=(1.75 * len(lams) + 0.6, 1.95 * (len(rows) + 1)))
    for c, lam in enumerate(lams):
        axes[0, c].set_title(f"λ={lam:g}", fontsize=9)
    # Top row: the two inputs above the ends of the geodesic (λ=0 photo, λ=1 noise).
    ends = {0.0: ("photo", photo), 1.0: ("noise", noise)}
    for c, lam in enumerate(lams):
        ax = axes[0, c]
        if float(lam) not in ends:
            ax.axis("off")
        else:
            label, h = ends[float(lam)]
            ax.imshow(h.reshape(shape).numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            s = sharpness(h, shape)
            ax.set_xlabel(f"{label}: G={s['gradient_energy']:.4f}\nH={s['entropy']:.3f}", fontsize=7)
    axes[0, 0].set_ylabel("inputs", fontsize=9)
    for r, (name, entries) in enumerate(rows.items(), start=1):
        for c, e in enumerate(entries):
            e.update(sharpness(e["barycenter"], shape))
            ax = axes[r, c]
            ax.imshow(e["barycenter"].reshape(shape).numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"G={e['gradient_energy']:.4f}  H={e['entropy']:.3f}", fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"Barycenters between noise (λ=1) and {image} (λ=0, {side}×{side} grey), eps={eps:g}\n"
                 "G = gradient energy (higher = sharper), H = entropy in nats (lower = sharper)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "reot_fig2_barycenters.png", dpi=120)
    plt.close(fig)
    report = {
        "image": image, "side": side, "eps": eps, "tol": tol, "lams": [float(v) for v in lams],
        "measures": {"gradient_energy": "mean squared neighbour difference (rows + columns) of the image "
                                        "rescaled to [0, 1]; higher = sharper",
                     "entropy": "Shannon entropy of the histogram in nats; lower = less spread"},
        "inputs": {"photo (lam=0)": sharpness(photo, shape), "noise (lam=1)": sharpness(noise, shape)},
        "rows": {name: [{k: v for k, v in e.items() if k != "barycenter"} for e in entries]
                 for name, entries in rows.items()},
        "seconds": time.perf_counter() - t0,
    }
    (out / "reot_fig2_sharpness.json").write_text(json.dumps(report, indent=2) + "\n")
    print(sharpness_table(report))
    return report


def sharpness_table(report: dict) -> str:
    """Markdown table: one line per row, ``gradient energy / entropy`` per λ."""
    lams = report["lams"]
    lines = ["| Fig. 2 row | " + " | ".join(f"λ={v:g} G / H" for v in lams) + " |",
             "|---|" + "---|" * len(lams)]
    for name, entries in report["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{e['gradient_energy']:.4f} / {e['entropy']:.3f}"
                                                   for e in entries) + " |")
    return "\n".join(lines)


def proximal_curve(out: Path = OUT, eps: float = 0.5, n_steps: int = 30) -> Path:
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "proximal_point.png", dpi=120)
    plt.close(fig)
    steps = [1, 2, 5, 10, 20, n_steps]
    lines = ["| step t | <C,P(t)> | gap to exact |", "|---|---|---|"]
    lines += [f"| {t} | {costs[t - 1].item():.6f} | {gap[t - 1]:.2e} |" for t in steps]
    (out / "proximal_point.md").write_text(f"exact OT cost (POT emd2): {exact:.6f}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return out / "proximal_point.png"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT, help="output folder (default %(default)s)")
    p.add_argument("--image", default=FIG2_IMAGE, choices=["flower.jpg", "china.jpg"],
                   help="scikit-learn sample photograph for Fig. 2 (default %(default)s)")
    p.add_argument("--side", type=int, default=FIG2_SIDE,
                   help="Fig. 2 image side in pixels (default %(default)s; runtime grows about as side^4)")
    p.add_argument("--eps", type=float, default=FIG2_EPS, help="Fig. 2 entropic regulariser (default %(default)s)")
    args = p.parse_args(argv)
    fig1_plans(args.out)
    fig2_barycenters(args.out, image=args.image, side=args.side, eps=args.eps)
    proximal_curve(args.out)
    print(f"wrote {args.out}/reot_fig1_plans.png, reot_fig2_barycenters.png, reot_fig2_sharpness.json, "
          "proximal_point.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
