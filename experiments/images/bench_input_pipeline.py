"""Training-input throughput of the device pipeline against the worker pipeline, per core (not a test).

Both build the same CIFAR training batch (crop + flip, or crop + flip + AutoAugment + Cutout, then
normalisation) from the same uint8 images:

- ``workers``: what one DataLoader worker does, per image: PIL ``RandomCrop`` … ``ToTensor`` ``Normalize``
  (``otcls.data.transforms.small_image_train``), then the default collate into one batch;
- ``device``: ``otcls.data.batch_augment.BatchAugment`` on the whole uint8 batch (here on ``--device``).

Each is timed best of ``--repeats`` on one thread (``torch.set_num_threads(1)``), interleaved so machine load
hits both alike, and reported as images/s per core with the ratio. The share of a training step the input
takes is ``t_input / (t_input + t_step)`` for a ResNet-32 step (forward, CE, backward, SGD) of the same batch
on ``--device``: on a CPU both compete for the core; on a GPU the worker pipeline must keep up with the
step on the host's cores instead (see docs/images.md). Writes ``OUT/input_pipeline.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from otcls.data.batch_augment import BatchAugment
from otcls.data.cifar import CIFARBatches
from otcls.data.transforms import CIFAR_MEAN, CIFAR_STD, small_image_train
from otcls.models import MODELS
from otcls.reporting.tables import markdown_table


def load_images(root: str, n: int) -> np.ndarray:
    """``n`` real CIFAR-10 training images (N, 32, 32, 3) from ``root/cifar-10-batches-py``, else random ones."""
    if root:
        ds = CIFARBatches(os.path.join(root, "cifar-10-batches-py"), ["data_batch_1"], "labels")
        return ds.data[:n]
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def best_of(fn, repeats: int, sync) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("OTCLS_CIFAR10_ROOT", ""),
                   help="folder holding cifar-10-batches-py/ (default $OTCLS_CIFAR10_ROOT; random images if unset)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    images = load_images(args.data_root, args.batch)
    pil = [Image.fromarray(im) for im in images]
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(dev)
    gen = torch.Generator().manual_seed(0)

    net = MODELS.build("resnet32").to(dev).to(memory_format=torch.channels_last)
    fc = torch.nn.Linear(net.out_features, 10).to(dev)
    opt = torch.optim.SGD([*net.parameters(), *fc.parameters()], lr=0.1, momentum=0.9)
    x = torch.randn(args.batch, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(fc(net(x)), y)
        loss.backward()
        opt.step()

    t_step = best_of(step, max(2, args.repeats // 2), sync)
    rows, payload = [], {"batch": args.batch, "device": str(dev), "real_images": bool(args.data_root),
                         "resnet32_step_s": t_step, "torch_threads": 1, "rows": {}}
    for augment in ("standard", "autoaugment"):
        tf = small_image_train(32, 4, CIFAR_MEAN, CIFAR_STD, augment)
        ba = BatchAugment(32, 4, CIFAR_MEAN, CIFAR_STD, augment)
        times = {"workers": float("inf"), "device": float("inf")}
        runs = {"workers": lambda: default_collate([tf(im) for im in pil]), "device": lambda: ba(batch, gen)}
        for _ in range(args.repeats):  # interleaved
            for name, fn in runs.items():
                times[name] = min(times[name], best_of(fn, 1, sync))
        for name, t in times.items():
            payload["rows"][f"{augment}/{name}"] = {"batch_s": t, "images_per_s": args.batch / t,
                                                   "step_share": t / (t + t_step)}
            rows.append([augment, name, f"{t * 1e3:.1f}", f"{args.batch / t:,.0f}",
                         f"{times['workers'] / t:.1f}×", f"{100 * t / (t + t_step):.1f} %"])
    md = (f"Training input of one batch of {args.batch} CIFAR images "
          f"({'real' if args.data_root else 'random'} pixels), one thread, best of {args.repeats}; device: {dev}; "
          f"ResNet-32 training step of the same batch: {t_step * 1e3:.0f} ms.\n\n"
          + markdown_table(["augment", "pipeline", "ms / batch", "images/s per core", "vs workers",
                            "input share of a step"], rows) + "\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "input_pipeline.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(args.out, "input_pipeline.json"), "w") as fh:
        json.dump(payload, fh, indent=2)
    print(md)


if __name__ == "__main__":
    main()
