"""What the BF score costs per evaluation pass, beside the confusion-matrix update, on this CPU.

    .venv/bin/python scripts/bf_cost.py [--images 24] [--threads 1] [--full]

Two scales, each with realistic label maps and a prediction that is wrong the way a network is
(borders displaced by a smooth field of a few pixels, some regions given another class):

- ``camvid``: 360 x 480, 11 classes, CamVid test's 233 images (docs/reference.md §4), blob
  regions from smoothed noise, ~3% void specks ("Unlabelled");
- ``embedded``: the embedded synthetic data (conf/data/synthetic.yaml: 96 x 128, 11 classes, a
  1-px void band along every border, 60 validation images), drawn by its own generator.

For each: ms per image of ``SegmentationScores.update`` (the confusion matrix), of ``BoundaryF1``
with the default ``segnet_script`` preset (the authors' script) and with ``fcnlab_v1`` (the old
default), all measured on the same maps in one run; and the time of one evaluation pass (per
image x the split's images; measured over all of them with ``--full``). The BF values are printed
too. Timings are CPU time of the metric updates only (labels given, no network).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from fcnlab.data.synthetic import render_sample
from fcnlab.metrics import BoundaryF1, SegmentationScores
from fcnlab.metrics.contours import boundary_masks

VOID = 255
SCALES = {  # name: (H, W, classes, images in the evaluated split, batch)
    "camvid": (360, 480, 11, 233, 5),
    "embedded": (96, 128, 11, 60, 20),
}
METRICS = {
    "confmat": lambda k: SegmentationScores(k),
    "bf segnet_script (default)": lambda k: BoundaryF1(k),
    "bf fcnlab_v1 (old default)": lambda k: BoundaryF1(k, preset="fcnlab_v1"),
    "bf seg2bdry+within_tolerance": lambda k: BoundaryF1(k, matching="within_tolerance"),
}


def perturb(label: np.ndarray, k: int, rng: np.random.Generator, shift: float) -> np.ndarray:
    """A network-like prediction of ``label`` (void-free labels): borders moved by a smooth
    displacement of up to ``shift`` px, and ~8% of the area, in a few smooth blobs, given
    another class."""
    h, w = label.shape
    sigma = max(h, w) / 12
    dy, dx = (ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma) for _ in range(2))
    scale = shift / max(np.abs(dy).max(), np.abs(dx).max(), 1e-9)
    yy, xx = np.mgrid[0:h, 0:w]
    y = np.clip(np.rint(yy + scale * dy), 0, h - 1).astype(int)
    x = np.clip(np.rint(xx + scale * dx), 0, w - 1).astype(int)
    pred = label[y, x]
    blobs = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma / 3)
    wrong, n = ndimage.label(blobs > np.quantile(blobs, 0.92))
    other = rng.integers(0, k, n + 1)
    return np.where(wrong > 0, other[wrong], pred)


def camvid_like(rng, h, w, k):
    """A road-scene-like map: 6 "stuff" classes (sky, building, road, pavement, tree, fence) as
    large smooth regions, ~25 "things" (poles, signs, cars, pedestrians, cyclists) pasted on as
    boxes and ellipses of 4..80 px, and ~15 small void patches (CamVid's "Unlabelled")."""
    stuff = [0, 1, 3, 4, 5, 7]
    field = ndimage.gaussian_filter(rng.standard_normal((len(stuff), h, w)), (0, h / 8, h / 8))
    field += 0.1 * ndimage.gaussian_filter(rng.standard_normal((len(stuff), h, w)),
                                           (0, h / 30, h / 30))  # ragged tree / fence edges
    label = np.asarray(stuff)[field.argmax(0)]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(25):
        cls = int(rng.choice([2, 6, 8, 9, 10]))
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(2, 40), rng.integers(2, 40)
        if cls == 2:  # poles are thin and tall
            ry, rx = rng.integers(20, 80), rng.integers(1, 3)
        shape = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) if rng.random() < 0.5 \
            else ((abs(yy - cy) <= ry) & (abs(xx - cx) <= rx))
        label[shape] = cls
    pred = perturb(label, k, rng, shift=4.0)
    gt = label.copy()
    for _ in range(15):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 10)
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = VOID
    return pred, gt


def embedded(rng, h, w, k):
    _, label, mask = render_sample(rng, (h, w), void_width=1)
    return perturb(label.astype(np.int64), k, rng, shift=2.0), mask.astype(np.int64)


def run(scale: str, n_images: int, full: bool, seed: int = 0) -> list[dict]:
    h, w, k, split, batch = SCALES[scale]
    n = split if full else min(n_images, split)
    rng = np.random.default_rng(seed)
    make = camvid_like if scale == "camvid" else embedded
    pairs = [make(rng, h, w, k) for _ in range(n)]
    batches = []
    for i in range(0, n, batch):
        p, t = zip(*pairs[i:i + batch])
        batches.append((torch.from_numpy(np.stack(p)), torch.from_numpy(np.stack(t))))
    gt_px = np.mean([int(boundary_masks(torch.from_numpy(np.where(t == VOID, -1, t))[None], k,
                                        "seg2bdry").sum()) for _, t in pairs])
    rows = []
    for name, factory in METRICS.items():
        metric = factory(k)
        start = time.process_time()
        for p, t in batches:
            metric.update(p, t)
        sec = time.process_time() - start
        value = metric.compute()
        value = float(value["mean_iou"] if isinstance(value, dict) else value)
        rows.append({"scale": scale, "metric": name, "images": n, "ms_per_image": 1e3 * sec / n,
                     "pass_s": sec / n * split, "value": value, "split": split,
                     "gt_px": gt_px})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24, help="images timed per scale")
    ap.add_argument("--full", action="store_true", help="time every image of the split")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU time, torch threads {args.threads}; one pass = ms/image x the split's images")
    print(f"{'scale':<9} {'metric':<30} {'timed':>5} {'ms/image':>9} {'pass s':>8} "
          f"{'x confmat':>9} {'value':>7}")
    for scale in args.scales:
        rows = run(scale, args.images, args.full)
        h, w, k, split, batch = SCALES[scale]
        print(f"# {scale}: {h} x {w}, {k} classes, {split} images per pass, batch {batch}, "
              f"{rows[0]['gt_px']:.0f} GT seg2bdry boundary px per image (all classes)")
        cm = rows[0]["ms_per_image"]
        for r in rows:
            label = "mIoU" if r["metric"] == "confmat" else "BF"
            print(f"{r['scale']:<9} {r['metric']:<30} {r['images']:>5} {r['ms_per_image']:>9.2f} "
                  f"{r['pass_s']:>8.2f} {r['ms_per_image'] / cm:>9.1f} "
                  f"{label} {r['value']:.4f}")


if __name__ == "__main__":
    main()
