"""A deterministic synthetic segmentation dataset that needs shape and texture, not colour.

Why it exists: the tests and the CPU smoke runs need a dataset that ships with the code, is
reproducible byte for byte, and is a *real* segmentation problem. So several classes share one
colour distribution, the background is cluttered with the same colours, objects occlude each
other, thin poles and small dots are rare in pixels, and, as in VOC (docs/reference.md §4), the label
has a 255 "void" band along every border between two classes.

Classes (index order): see ``SYNTHETIC_CLASSES``. Each image is seeded from (seed, split, index)
through ``numpy.random.SeedSequence``, so a split never depends on the size of the others nor on
the order of generation.

On-disk layout (shared with ``FolderDataModule``, so real data goes through the same reader)::

    <root>/images/<id>.png     RGB 8-bit image
    <root>/masks/<id>.png      palette-mode ("P") PNG: pixel value = class index, 255 = void
    <root>/splits/{train,val,test}.txt   one id per line, ids like train_00000
    <root>/classes.yaml        classes (names, index order), palette ([r, g, b]), ignore_index: 255
    <root>/meta.json           generator name/version and parameters

CLI: ``python -m fcnlab.data.synthetic <root> [--seed 0] [--image-size 96 128] ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from scipy import ndimage

from fcnlab.errors import DataError
from fcnlab.progress import track

GENERATOR = "fcnlab.data.synthetic"
GENERATOR_VERSION = 1  # bump when the pictures change, so old folders are not silently reused
IGNORE_INDEX = 255
SPLITS = ("train", "val", "test")

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "background", "disk", "box", "triangle", "ring", "pole",
    "cross", "dot", "star", "striped_blob", "checker_blob",
)


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map as a flat [r, g, b, ...] list; index 255 -> (224, 224, 192)."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


SYNTHETIC_PALETTE: list[int] = voc_palette(256)  # usable as PIL ``putpalette`` argument

# Colour families (RGB centres). Classes that share families share colour distributions, and the
# background draws from all of them: colour alone cannot tell the classes apart.
_FAMILIES = np.array([
    (200, 50, 50),    # 0 red
    (230, 150, 40),   # 1 orange
    (60, 170, 70),    # 2 green
    (50, 90, 200),    # 3 blue
    (140, 60, 170),   # 4 purple
    (140, 140, 140),  # 5 grey
], dtype=np.float32)
_ALL = tuple(range(len(_FAMILIES)))
_CLASS_FAMILIES = {
    1: (0, 2, 3), 2: (0, 2, 3),  # disk and box: identical colour distributions
    3: (1, 4, 5), 4: (0, 1, 3), 5: (5, 2, 4), 6: (0, 1, 4), 7: (3, 2, 1), 8: (4, 0, 5),
    9: _ALL, 10: _ALL,
}
# Relative frequency of each object class; dots and poles are also small, hence rare in pixels.
_CLASS_WEIGHTS = np.array([0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.8, 0.6, 1.0, 0.8, 0.8])
_CLASS_WEIGHTS = _CLASS_WEIGHTS / _CLASS_WEIGHTS.sum()
_SPLIT_KEY = {"train": 0, "val": 1, "test": 2}


def _colour(rng, families) -> np.ndarray:
    """One instance colour: a family centre with a wide jitter (families overlap at the edges)."""
    return _FAMILIES[rng.choice(families)] + rng.uniform(-40, 40, 3).astype(np.float32)


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled to h x w."""
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    gy = np.linspace(0, cells, h, dtype=np.float32)
    gx = np.linspace(0, cells, w, dtype=np.float32)
    y0 = np.minimum(gy.astype(int), cells - 1)
    x0 = np.minimum(gx.astype(int), cells - 1)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _loguniform(rng, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _frame(rng, yy, xx):
    """Random centre and rotation: rotated coordinates (u, v), radius d and angle theta."""
    h, w = yy.shape
    cy, cx = rng.uniform(0.05, 0.95) * h, rng.uniform(0.05, 0.95) * w
    a = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(a) + dy * np.sin(a)
    v = -dx * np.sin(a) + dy * np.cos(a)
    return u, v, np.hypot(u, v), np.arctan2(v, u)


def _blob(rng, yy, xx, s):
    """A star-convex irregular blob: radius modulated by a few low harmonics."""
    u, v, _, _ = _frame(rng, yy, xx)
    v = v * rng.uniform(0.6, 1.4)  # elongation
    d, theta = np.hypot(u, v), np.arctan2(v, u)
    radius = _loguniform(rng, 0.12, 0.32) * s * np.ones_like(d)
    for k in (2, 3, 4):
        radius *= 1 + rng.uniform(0, 0.15) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return d <= radius


def _shape(cls: int, rng, yy, xx) -> np.ndarray:
    """Boolean mask of one object of class ``cls``, computed on the whole coordinate grid."""
    h, w = yy.shape
    s = min(h, w)
    if cls == 1:  # disk
        return _frame(rng, yy, xx)[2] <= _loguniform(rng, 0.06, 0.3) * s
    if cls == 2:  # box (rotated rectangle)
        u, v, _, _ = _frame(rng, yy, xx)
        return (np.abs(u) <= _loguniform(rng, 0.05, 0.3) * s) & (
            np.abs(v) <= _loguniform(rng, 0.05, 0.3) * s)
    if cls == 3:  # triangle: inside when all three edge cross products share a sign
        cy, cx = rng.uniform(0.05, 0.95) * h, rng.uniform(0.05, 0.95) * w
        r = _loguniform(rng, 0.1, 0.4) * s
        angles = rng.uniform(0, 2 * np.pi) + np.cumsum([0, *rng.uniform(1.6, 2.6, 2)])
        py, px = cy + r * np.sin(angles), cx + r * np.cos(angles)
        sides = [(px[j] - px[i]) * (yy - py[i]) - (py[j] - py[i]) * (xx - px[i])
                 for i, j in ((0, 1), (1, 2), (2, 0))]
        return ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | (
            (sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0))
    if cls == 4:  # ring (annulus), at least 4 px thick so a core survives the void band
        d = _frame(rng, yy, xx)[2]
        r_out = _loguniform(rng, 0.12, 0.38) * s
        return (d <= r_out) & (d >= r_out - rng.uniform(4, max(4.5, 0.45 * r_out)))
    if cls == 5:  # pole: long segment 3.5-5.5 px wide: 1 px void per side leaves a core
        u, v, _, _ = _frame(rng, yy, xx)
        half_len = rng.uniform(0.25, 0.5) * max(h, w)
        return (np.abs(u) <= half_len) & (np.abs(v) <= rng.uniform(1.75, 2.75))
    if cls == 6:  # cross: two perpendicular bars
        u, v, _, _ = _frame(rng, yy, xx)
        arm = _loguniform(rng, 0.1, 0.3) * s
        t = rng.uniform(2, max(2.5, arm / 3))
        return ((np.abs(u) <= arm) & (np.abs(v) <= t)) | ((np.abs(v) <= arm) & (np.abs(u) <= t))
    if cls == 7:  # dots: a handful of small disks, radius 2.5-4 px
        mask = np.zeros((h, w), bool)
        for _ in range(rng.integers(2, 7)):
            mask |= _frame(rng, yy, xx)[2] <= rng.uniform(2.5, 4.0)
        return mask
    if cls == 8:  # star: radius follows a triangle wave in the angle
        _, _, d, theta = _frame(rng, yy, xx)
        r_out = _loguniform(rng, 0.12, 0.32) * s
        r_in = r_out * rng.uniform(0.35, 0.6)
        f = (theta * rng.integers(5, 9) / (2 * np.pi)) % 1.0
        return d <= r_in + (r_out - r_in) * np.abs(2 * f - 1)
    return _blob(rng, yy, xx, s)  # 9 striped blob, 10 checker blob: shape shared, texture differs


def _fill(cls: int, rng, yy, xx) -> np.ndarray:
    """H x W x 3 float texture for an object: stripes / checker for the texture classes, else a
    flat, gradient or noisy fill (shared by all plain classes, so texture alone is not enough)."""
    h, w = yy.shape
    c1 = _colour(rng, _CLASS_FAMILIES[cls])
    if cls in (9, 10):
        c2 = _colour(rng, _ALL)
        u, v, _, _ = _frame(rng, yy, xx)
        if cls == 9:
            on = np.sin(2 * np.pi * u / rng.uniform(4, 10)) > 0
        else:
            cell = rng.uniform(3, 8)
            on = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
        return np.where(on[..., None], c1, c2)
    kind = rng.choice(3)
    if kind == 0:  # flat
        return np.broadcast_to(c1, (h, w, 3))
    if kind == 1:  # linear gradient towards a second colour of the same class
        u = _frame(rng, yy, xx)[0]
        t = np.clip(u / max(h, w) + 0.5, 0, 1)[..., None]
        return c1 * (1 - t) + _colour(rng, _CLASS_FAMILIES[cls]) * t
    return c1 + 35 * _smooth_noise(rng, h, w, int(rng.integers(3, 9)))[..., None]


def _background(rng, yy, xx) -> np.ndarray:
    """Gradient + low-frequency noise + amorphous clutter blobs in object colours (label 0)."""
    h, w = yy.shape
    t = np.clip(_frame(rng, yy, xx)[0] / max(h, w) + 0.5, 0, 1)[..., None]
    image = _colour(rng, _ALL) * (1 - t) + _colour(rng, _ALL) * t
    image = image + 30 * _smooth_noise(rng, h, w, int(rng.integers(2, 6)))[..., None]
    for _ in range(rng.integers(0, 4)):
        clutter = _smooth_noise(rng, h, w, int(rng.integers(3, 7))) > rng.uniform(0.4, 0.7)
        image = np.where(clutter[..., None], _colour(rng, _ALL), image)
    return image


def void_band(label: np.ndarray, width: int = 1) -> np.ndarray:
    """Set to 255 every pixel whose (2w+1)^2 neighbourhood holds another class (VOC-style)."""
    if width <= 0:
        return label.copy()
    size = 2 * width + 1
    border = ndimage.maximum_filter(label, size, mode="nearest") != ndimage.minimum_filter(
        label, size, mode="nearest")
    return np.where(border, np.uint8(IGNORE_INDEX), label).astype(np.uint8)


def render_sample(rng: np.random.Generator, image_size=(96, 128), void_width: int = 1):
    """One picture: returns (RGB uint8 H x W x 3, label before void uint8, mask with void uint8)."""
    h, w = image_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, yy, xx)
    label = np.zeros((h, w), np.uint8)
    classes = rng.choice(len(SYNTHETIC_CLASSES), size=rng.integers(2, 7), p=_CLASS_WEIGHTS)
    objects = [(cls, _shape(int(cls), rng, yy, xx)) for cls in classes]
    # Paint roughly large-to-small with jitter, so objects occlude each other (label = topmost)
    # but small objects are seldom hidden entirely.
    keys = [m.sum() * rng.lognormal(0, 0.7) for _, m in objects]
    for i in np.argsort(keys, kind="stable")[::-1]:
        cls, mask = objects[i]
        image = np.where(mask[..., None], _fill(int(cls), rng, yy, xx), image)
        label[mask] = cls
    image = ndimage.gaussian_filter(image, sigma=(0.7, 0.7, 0))  # soft edges, like a camera
    image = image + rng.normal(0, 6, image.shape)  # sensor noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label, void_band(label, void_width)


def _meta(image_size, counts, seed, void_width) -> dict:
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "params": {"image_size": list(image_size), "seed": seed, "void_width": void_width,
                   **{f"num_{s}": n for s, n in zip(SPLITS, counts)}},
    }


def _is_complete(root: Path, meta: dict) -> bool:
    """True when root/meta.json equals ``meta`` and every listed image and mask exists."""
    try:
        if json.loads((root / "meta.json").read_text()) != meta:
            return False
        for split in SPLITS:
            ids = (root / "splits" / f"{split}.txt").read_text().split()
            if len(ids) != meta["params"][f"num_{split}"]:
                return False
            for i in ids:
                if not (root / "images" / f"{i}.png").is_file() or not (
                        root / "masks" / f"{i}.png").is_file():
                    return False
    except (OSError, ValueError):
        return False
    return True


def _generator_of(root: Path):
    try:
        return json.loads((root / "meta.json").read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        return None


def _write(tmp: Path, image_size, counts, seed, void_width, meta) -> None:
    for sub in ("images", "masks", "splits"):
        (tmp / sub).mkdir(parents=True)
    # One progress over all splits (fcnlab.progress: silent unless it takes a few seconds).
    samples = [(split, i) for split, n in zip(SPLITS, counts) for i in range(n)]
    for split, i in track(samples, "synthetic data", unit="pictures"):
        key = np.random.SeedSequence(seed, spawn_key=(_SPLIT_KEY[split], i))
        rng = np.random.default_rng(key)
        image, _, mask = render_sample(rng, image_size, void_width)
        sample_id = f"{split}_{i:05d}"
        Image.fromarray(image).save(tmp / "images" / f"{sample_id}.png", compress_level=6)
        mask_png = Image.fromarray(mask)
        mask_png.putpalette(SYNTHETIC_PALETTE)  # "L" -> "P": values stay class indices
        mask_png.save(tmp / "masks" / f"{sample_id}.png", compress_level=6)
    for split, n in zip(SPLITS, counts):
        (tmp / "splits" / f"{split}.txt").write_text("".join(f"{split}_{i:05d}\n"
                                                             for i in range(n)))
    palette = [SYNTHETIC_PALETTE[3 * c:3 * c + 3] for c in range(len(SYNTHETIC_CLASSES))]
    (tmp / "classes.yaml").write_text(yaml.safe_dump(
        {"classes": list(SYNTHETIC_CLASSES), "palette": palette, "ignore_index": IGNORE_INDEX},
        sort_keys=False, default_flow_style=None))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def generate_synthetic(root, *, image_size=(96, 128), num_train: int = 400, num_val: int = 60,
                       num_test: int = 60, seed: int = 0, void_width: int = 1,
                       overwrite: bool = False) -> Path:
    """Write the dataset to ``root`` (layout in the module docstring) and return ``root``.

    Idempotent: a complete folder with the same parameters is reused untouched. The data are
    written into a temporary sibling and renamed into place at the end, so an interrupted run never
    leaves a folder that looks complete, and a concurrent run that finished first is simply used.
    """
    root = Path(root)
    image_size = (int(image_size[0]), int(image_size[1]))
    counts = (int(num_train), int(num_val), int(num_test))
    meta = _meta(image_size, counts, int(seed), int(void_width))
    if _is_complete(root, meta):
        return root
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file; expected a folder for the synthetic dataset")
    if root.exists() and any(root.iterdir()):
        if _generator_of(root) != GENERATOR:  # never overwrite (delete) somebody else's folder
            raise DataError(f"{root} exists and is not a synthetic dataset folder (no "
                            "meta.json from this generator); choose an empty or new folder")
        if not overwrite:
            raise DataError(f"{root} holds a synthetic dataset with other parameters (or an "
                            f"incomplete one); expected {meta['params']}: delete it or pass "
                            "overwrite=True")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write(tmp, image_size, counts, int(seed), int(void_width), meta)
        if root.exists() and overwrite and not _is_complete(root, meta):
            trash = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(root, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, root)  # atomic; fails if another process already filled root
        except OSError:
            if not _is_complete(root, meta):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate the fcnlab synthetic dataset.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--image-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=60)
    parser.add_argument("--num-test", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--void-width", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = generate_synthetic(args.root, image_size=args.image_size, num_train=args.num_train,
                              num_val=args.num_val, num_test=args.num_test, seed=args.seed,
                              void_width=args.void_width, overwrite=args.overwrite)
    print(f"{root} ready in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
