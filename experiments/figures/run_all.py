"""Make the figures of ``make figures`` one by one and report which were made.

A figure whose input is missing (the demo's checkpoint, the Fashion-MNIST files) or that fails is
reported, and the others are still made. Exit status 0 only if every requested figure was made,
1 otherwise. Figures: fig1 (RE-OT plans vs eps), fig2 (noise → photograph barycenters + sharpness
JSON), proximal (proximal-point curve), tsne (t-SNE of the demo model's features).
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling figure scripts are not a package

import reot_figures  # noqa: E402
import torch  # noqa: E402
import tsne_features  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

FIGURES = ("fig1", "fig2", "proximal", "tsne")


@dataclass
class Outcome:
    name: str
    status: str  # "made", "missing input" or "failed"
    seconds: float
    detail: str  # what was written, or why not


def steps(args) -> Dict[str, Callable[[], str]]:
    """Figure name → a callable that makes it and returns what it wrote."""
    out = args.out

    def fig2() -> str:
        reot_figures.fig2_barycenters(out, image=args.image, side=args.fig2_side, eps=args.fig2_eps)
        return f"{out}/reot_fig2_barycenters.png, reot_fig2_sharpness.json"

    return {
        "fig1": lambda: str(reot_figures.fig1_plans(out)),
        "fig2": fig2,
        "proximal": lambda: f"{reot_figures.proximal_curve(out)}, proximal_point.md",
        "tsne": lambda: str(tsne_features.make_figure(out, args.checkpoint, args.runs, args.fmnist_root,
                                                      args.tsne_n)),
    }


def run(names: List[str], args) -> List[Outcome]:
    """Make each figure in ``names``; never stops at the first failure."""
    Path(args.out).mkdir(parents=True, exist_ok=True)
    makers = steps(args)
    outcomes = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            detail, status = makers[name](), "made"
        except tsne_features.MissingInput as err:
            detail, status = str(err), "missing input"
            print(f"{name}: {err}", file=sys.stderr)
        except Exception as err:  # one broken figure must not cost the others
            traceback.print_exc()
            detail, status = f"{type(err).__name__}: {err}", "failed"
        outcomes.append(Outcome(name, status, time.perf_counter() - t0, detail))
    return outcomes


@contextmanager
def limited_threads(n: int):
    """Run torch and the OpenMP/BLAS pools (t-SNE) with ``n`` threads; restores torch's count after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(old)


def summary(outcomes: List[Outcome]) -> str:
    lines = [f"{'figure':<9} {'status':<14} {'seconds':>8}  output / reason"]
    lines += [f"{o.name:<9} {o.status:<14} {o.seconds:>8.1f}  {o.detail}" for o in outcomes]
    made = sum(o.status == "made" for o in outcomes)
    lines.append(f"{made} of {len(outcomes)} figures made")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES), help="figures to make (default: all)")
    p.add_argument("--out", type=Path, default=reot_figures.OUT, help="output folder (default %(default)s)")
    p.add_argument("--checkpoint", type=Path, default=None, help="t-SNE model (default: the demo's reot_ratio seed0)")
    p.add_argument("--runs", type=Path, default=tsne_features.RUNS,
                   help="results folder the t-SNE checkpoint is taken from (default %(default)s)")
    p.add_argument("--fmnist-root", default="data/fashion-mnist")
    p.add_argument("--tsne-n", type=int, default=1500, help="t-SNE samples per split")
    p.add_argument("--image", default=reot_figures.FIG2_IMAGE, choices=["flower.jpg", "china.jpg"],
                   help="Fig. 2 photograph (default %(default)s)")
    p.add_argument("--fig2-side", type=int, default=reot_figures.FIG2_SIDE,
                   help="Fig. 2 image side in pixels (default %(default)s)")
    p.add_argument("--fig2-eps", type=float, default=reot_figures.FIG2_EPS,
                   help="Fig. 2 entropic regulariser (default %(default)s)")
    # One thread by default: the per-step tensors are small, and on 2 cores shared with another job
    # 2 threads made the Fig. 2 barycenters 4x and t-SNE 2-14x slower than 1 thread (measured).
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default %(default)s)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    with limited_threads(args.threads):
        outcomes = run(list(dict.fromkeys(args.only)), args)
    print(summary(outcomes))
    return 0 if all(o.status == "made" for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
