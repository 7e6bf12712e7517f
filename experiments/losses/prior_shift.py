"""Test-time inference under label shift, on a synthetic set with known priors.

Five 1-D Gaussian classes (unit variance, means 2 apart); the "model" is the Bayes
log-posterior under a long-tailed training prior (imbalance 20). Test sets are drawn with the
train (LT), uniform and reverse-LT priors; each inference mode of ``TransportHead.predict`` is
scored with the prior it is told (``known``) or the EM estimate (``estimated``). Writes a
Markdown table and a bar chart.

    python experiments/losses/prior_shift.py --out results/losses
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from otcls.heads import TransportHead  # noqa: E402
from otcls.inference import em_prior, reverse_prior  # noqa: E402

C = 5
MEANS = 2.0 * np.arange(C)
TRAIN = 20.0 ** (-np.arange(C) / (C - 1))
TRAIN = TRAIN / TRAIN.sum()
TESTS = {"LT": TRAIN, "uniform": np.full(C, 1.0 / C), "reverse-LT": reverse_prior(torch.tensor(TRAIN)).numpy()}
METHODS = [("softmax", "softmax", None), ("class_bias (known b)", "class_bias", "known"),
           ("RE-OT (known b)", "reot", "known"), ("DB-OT (known b)", "dbot", "known"),
           ("DB-OT (EM-estimated b)", "dbot", "estimated")]


def sample(prior: np.ndarray, n: int, rng: np.random.Generator):
    y = rng.choice(C, size=n, p=prior)
    x = rng.normal(MEANS[y], 1.0)
    return torch.tensor(-0.5 * (x[:, None] - MEANS[None, :]) ** 2 + np.log(TRAIN)), torch.tensor(y)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/losses")
    ap.add_argument("--n", type=int, default=4000, help="test samples per set")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eps", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=0.05)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = TransportHead(1, C, class_counts=TRAIN * 1e4).double()
    acc = {(m, t): [] for m, *_ in METHODS for t in TESTS}
    prior_err = {t: [] for t in TESTS}
    jobs = [(s, t) for s in range(args.seeds) for t in TESTS]
    for seed, test in tqdm(jobs, desc="prior shift"):
        logits, y = sample(TESTS[test], args.n, np.random.default_rng(seed))
        est = em_prior(logits.softmax(1), torch.tensor(TRAIN))
        prior_err[test].append((est - torch.tensor(TESTS[test])).abs().sum().item())
        for name, mode, which in METHODS:
            prior = torch.tensor(TESTS[test]) if which == "known" else "estimated"
            pred = head.predict(logits, mode, prior, eps=args.eps, delta=args.delta)
            acc[(name, test)].append((pred == y).double().mean().item() * 100)
    lines = [f"Synthetic label shift: {C} classes, train imbalance 20, {args.n} test samples, "
             f"{args.seeds} seeds (mean ± std top-1 %), eps={args.eps}, δ={args.delta}.", "",
             "| inference | " + " | ".join(TESTS) + " |", "|---|" + "---|" * len(TESTS)]
    for name, *_ in METHODS:
        cells = [f"{np.mean(acc[(name, t)]):.1f} ± {np.std(acc[(name, t)]):.1f}" for t in TESTS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| EM prior estimate, L1 error | " + " | ".join(f"{np.mean(prior_err[t]):.3f}" for t in TESTS) + " |",
              "|---|" + "---|" * len(TESTS)]
    (out / "prior_shift.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(METHODS)
    for k, (name, *_) in enumerate(METHODS):
        ax.bar(np.arange(len(TESTS)) + k * width, [np.mean(acc[(name, t)]) for t in TESTS], width, label=name)
    ax.set_xticks(np.arange(len(TESTS)) + 0.4 - width / 2, list(TESTS))
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Inference under label shift (synthetic)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "prior_shift.png", dpi=120)
    print("\n".join(lines))
    print(f"wrote {out / 'prior_shift.md'} and {out / 'prior_shift.png'}")


if __name__ == "__main__":
    main()
