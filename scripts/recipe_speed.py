"""Training iterations per second of FCN-8s variants, side by side in one process.

The timing loop behind docs/embedded.md's choices (aligned geometry, BN, fc width, width, NHWC):
forward + loss, backward and an Adam step on one random batch (8 x 3 x 96 x 128 by default),
``--steps`` timed steps after 3 warm-up steps per variant, printed as a Markdown table.

    OMP_NUM_THREADS=1 python scripts/recipe_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from fcnlab.bench.rows import EMBEDDED_RECIPE
from fcnlab.models.fcn import FCN

# name: (FCN keyword arguments over the recipe's, channels-last)
VARIANTS = {
    "BN, aligned, fc 4096": ({"fc_channels": 4096}, False),
    "BN, aligned, fc 4096, channels-last": ({"fc_channels": 4096}, True),
    "no BN, aligned, fc 4096": ({"fc_channels": 4096, "batch_norm": False}, False),
    "BN, aligned, fc 1024 (the recipe)": ({}, False),
    "BN, aligned, fc 4096, width 1/16": ({"fc_channels": 4096, "width": 0.0625}, False),
    "BN, caffe geometry, fc 4096": ({"fc_channels": 4096, "geometry": "caffe"}, False),
}
RECIPE = {"num_classes": 11, "variant": "8s", "width": 0.125, **EMBEDDED_RECIPE}


def time_variant(kwargs: dict, channels_last: bool, x: torch.Tensor, y: torch.Tensor,
                 steps: int) -> tuple[float, float, float]:
    net = FCN(**{**RECIPE, **kwargs}).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    spent = [0.0, 0.0, 0.0]
    for i in range(3 + steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y, ignore_index=255)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= 3:
            for j, d in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                spent[j] += d
    return tuple(1000 * s / steps for s in spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hw", type=int, nargs=2, default=(96, 128))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, *args.hw)
    y = torch.randint(0, 11, (args.batch, *args.hw))
    print(f"FCN-8s, batch {args.batch}, {args.hw[0]}x{args.hw[1]}, width 1/8 unless said, "
          f"{torch.get_num_threads()} thread(s), {args.steps} timed steps\n")
    print("| variant | forward ms | backward ms | Adam ms | it/s |")
    print("|---|---:|---:|---:|---:|")
    for name, (kwargs, cl) in VARIANTS.items():
        f, b, o = time_variant(kwargs, cl, x, y, args.steps)
        print(f"| {name} | {f:.1f} | {b:.1f} | {o:.1f} | {1000 / (f + b + o):.2f} |", flush=True)


if __name__ == "__main__":
    main()
