"""How large the objects of a synthetic split are, against a network's output stride.

    python scripts/object_sizes.py [--split val] [--stride 32] [--data DIR]

An object is a connected component of one non-background class in a mask (8-connectivity, as
SciPy's ``ndimage.label`` with a 3x3 structure); its size is the longer side of its bounding
box. Prints how many objects there are, the median size, and the share smaller than the stride:
why a stride-32 FCN-32s scores the embedded pictures poorly (README, FCN table). DIR defaults to
the main job's synthetic data folder under data/ (written by the first `python train.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

DEFAULT = Path(__file__).resolve().parents[1] / "data" / (
    "synthetic-v1-96x128-n2000-200-200-s0-void1")


def sizes(data: Path, split: str, background: int = 0, void: int = 255) -> list[int]:
    names = (data / "splits" / f"{split}.txt").read_text().split()
    out = []
    for name in names:
        mask = np.array(Image.open(data / "masks" / f"{name}.png"))
        for cls in np.unique(mask):
            if cls in (background, void):
                continue
            labels, _ = ndimage.label(mask == cls, structure=np.ones((3, 3), bool))
            for rows, cols in ndimage.find_objects(labels):
                out.append(max(rows.stop - rows.start, cols.stop - cols.start))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--split", default="val")
    parser.add_argument("--stride", type=int, default=32)
    args = parser.parse_args(argv)
    if not (args.data / "splits" / f"{args.split}.txt").is_file():
        print(f"error: {args.data / 'splits' / (args.split + '.txt')}: not found; run "
              f"`python train.py` once to write the synthetic data", file=sys.stderr)
        return 1
    s = np.array(sizes(args.data, args.split))
    print(f"{args.data.name} {args.split}: {len(s)} objects, longer bounding-box side median "
          f"{np.median(s):.0f} px; {100 * np.mean(s < args.stride):.0f}% smaller than "
          f"{args.stride} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
