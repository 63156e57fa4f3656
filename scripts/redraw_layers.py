"""Copy a VGG16 classifier file with some of its layers drawn afresh at He initialisation.

    python scripts/redraw_layers.py SRC DEST LAYER [LAYER ...]

A probe of what a pretrained layer contributes: train once from SRC and once from DEST
(``model.pretrained=DEST``) and compare. LAYER is a torchvision-layout prefix of SRC
(``features.24`` is conv5_1, ``classifier.0`` fc6; the layouts: docs/models.md); its weight is
drawn from N(0, 2 / fan_in) (He et al., ICCV 2015, as the trunk initialises a layer it does not
load) with a fixed seed, its bias set to 0. DEST gets SRC's sidecar (``<file>.json``: the input
convention the file expects, fcnlab.models.weights) without SRC's SHA-256, and with the redrawn
layers listed. Used in docs/embedded.md ("What the stride-32 networks miss").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def redraw(state: dict[str, torch.Tensor], layers: list[str], seed: int = 0) -> dict:
    out = dict(state)
    generator = torch.Generator().manual_seed(seed)
    for layer in layers:
        weight = state[f"{layer}.weight"]
        fan_in = weight[0].numel()
        out[f"{layer}.weight"] = torch.randn(weight.shape, generator=generator) * (
            2.0 / fan_in) ** 0.5
        out[f"{layer}.bias"] = torch.zeros_like(state[f"{layer}.bias"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("layers", nargs="+")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    state = torch.load(args.src, weights_only=True)
    missing = [n for n in args.layers if f"{n}.weight" not in state or f"{n}.bias" not in state]
    if missing:
        layers = sorted({k.rsplit(".", 1)[0] for k in state})
        print(f"error: {args.src}: no layer {missing}; its layers: {layers}", file=sys.stderr)
        return 1
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(redraw(state, args.layers, args.seed), args.dest)
    sidecar = Path(f"{args.src}.json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    meta.pop("sha256", None)
    meta.update(path=str(args.dest), redrawn=args.layers, redrawn_from=str(args.src))
    Path(f"{args.dest}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{args.dest}: {', '.join(args.layers)} redrawn (He, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
