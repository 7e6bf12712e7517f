"""Training step time per loss against CE in the same process (not a test).

ResNet-32 + TransportHead, batch 512 × 100 classes, random 32×32 inputs; each step is forward,
loss, backward and an SGD update. Losses are timed interleaved (round-robin) so machine load
hits all alike; the ratio to CE is reported (the project's targets: RE-OT ≤ 1.05×,
DB-OT with k = 5 ≤ 1.2×). Writes ``OUT/step_time.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from otcls.heads import TransportHead
from otcls.models import MODELS
from otcls.reporting.tables import markdown_table

LOSSES = {"ce": {}, "balanced_softmax": {}, "reot": {"prior": "ratio", "lam": 0.5}, "dbot": {"iters": 5, "delta": 0.2}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--steps", type=int, default=5, help="timed steps per loss (after 1 warm-up step)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="results/bench_image_step")
    args = p.parse_args()
    dev = torch.device(args.device)
    counts = [int(500 * 100 ** (-i / (args.classes - 1))) for i in range(args.classes)]
    x = torch.randn(args.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, args.classes, (args.batch,), device=dev)
    setups = {}
    for name, kw in LOSSES.items():
        torch.manual_seed(0)
        net = MODELS.build("resnet32").to(dev)
        head = TransportHead(net.out_features, args.classes, loss=name, loss_kwargs=kw, class_counts=counts).to(dev)
        opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
        setups[name] = (net, head, opt)

    def step(name: str) -> float:
        net, head, opt = setups[name]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = head.compute_loss(head(net(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for name in setups:
        step(name)  # warm-up
    times = {name: [] for name in setups}
    for _ in range(args.steps):
        for name in setups:
            times[name].append(step(name))
    med = {n: statistics.median(t) for n, t in times.items()}
    rows = [[n, 1000 * med[n], med[n] / med["ce"]] for n in setups]
    table = markdown_table(["loss", "median step (ms)", "× CE"], rows, digits=3)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "step_time.md"), "w") as fh:
        fh.write(f"# Step time, ResNet-32, batch {args.batch} × {args.classes} classes, {args.device}\n\n{table}")
    with open(os.path.join(args.out, "step_time.json"), "w") as fh:
        json.dump({"device": args.device, "batch": args.batch, "classes": args.classes,
                   "median_s": med, "ratio_to_ce": {n: med[n] / med["ce"] for n in med}}, fh, indent=1)
    print(table)


if __name__ == "__main__":
    main()
