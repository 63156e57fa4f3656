"""Read images and palette-index label PNGs from the fcnlab folder layout, refusing bad data.

Layout (written by :mod:`fcnlab.data.synthetic`, and what a user's own data must look like)::

    <root>/images/<id>.png (or .jpg/.jpeg)   RGB image
    <root>/masks/<id>.png                    "P" or "L" PNG: pixel value = class index, 255 = void
    <root>/splits/<split>.txt                one id per line

Every problem raises :class:`~fcnlab.errors.DataError` naming the file: labels are never clipped,
quantised or read as RGB (reading a VOC label as RGB is a classic silent bug, REFERENCE.md §6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fcnlab.data.transforms import check_mode, preprocess
from fcnlab.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_split(root: Path, split: str) -> list[str]:
    """Ids listed in ``root/splits/<split>.txt`` (blank lines skipped); DataError if none."""
    path = Path(root) / "splits" / f"{split}.txt"
    try:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"cannot read split file {path}: {e.strerror or e}; expected one id per "
                        "line") from e
    if not ids:
        raise DataError(f"split file {path} is empty; expected one id per line")
    return ids


def read_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB array; grayscale, palette and RGBA images are converted to RGB."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here and not later
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im)
    except Exception as e:  # PIL raises OSError, SyntaxError, zlib.error... on bad files
        raise DataError(f"cannot read image {path}: {e}") from e


def read_mask(path: Path, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """H x W uint8 array of class indices, checked to lie in [0, num_classes-1] or ignore_index."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            mask = np.asarray(im) if mode in ("P", "L") else None
    except Exception as e:  # PIL raises OSError, SyntaxError, zlib.error... on bad files
        raise DataError(f"cannot read mask {path}: {e}") from e
    if mask is None:
        hint = (" Convert it by mapping each palette colour to its index (exact colour match); "
                "do not use Image.quantize, which can change indices." if mode in ("RGB", "RGBA")
                else "")
        raise DataError(f"mask {path} has mode {mode!r}; expected a palette-index PNG (mode 'P' or "
                        f"'L') whose pixel values are class indices.{hint}")
    counts = np.bincount(mask.ravel(), minlength=256)
    valid = np.zeros(256, bool)
    valid[:num_classes] = True
    if 0 <= ignore_index < 256:
        valid[ignore_index] = True
    bad = np.flatnonzero((counts > 0) & ~valid)
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise DataError(f"mask {path} has label values {shown} outside the valid range "
                        f"[0, {num_classes - 1}] (or {ignore_index} = void)")
    return mask


class SegmentationFolderDataset(Dataset):
    """Samples ``{"image": float32 3xHxW, "mask": int64 HxW, "id": str}`` of one split.

    ``transform`` (default None: no augmentation, the FCN protocol) is applied jointly to the uint8
    RGB image and the uint8 mask before preprocessing, albumentations-style:
    ``transform(image=..., mask=...) -> {"image": ..., "mask": ...}``.
    """

    def __init__(self, root, split: str, *, num_classes: int, preprocess: str = "caffe",
                 ignore_index: int = 255, transform: Callable | None = None):
        self.root = Path(root)
        self.split = split
        self.num_classes = int(num_classes)
        self.preprocess = check_mode(preprocess)
        self.ignore_index = int(ignore_index)
        self.transform = transform
        self.ids = read_split(self.root, split)
        # Resolve every path once: a missing file fails at set-up, not hours into training.
        self.image_paths = [self._image_path(i) for i in self.ids]
        self.mask_paths = [self.root / "masks" / f"{i}.png" for i in self.ids]
        for path in self.mask_paths:
            if not path.is_file():
                raise DataError(f"mask file {path} is missing (listed in splits/{split}.txt)")

    def _image_path(self, sample_id: str) -> Path:
        candidates = [self.root / "images" / f"{sample_id}{ext}" for ext in IMAGE_EXTENSIONS]
        for path in candidates:
            if path.is_file():
                return path
        raise DataError(f"image file {candidates[0]} is missing (also tried "
                        f"{', '.join(IMAGE_EXTENSIONS[1:])}; listed in splits/{self.split}.txt)")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.image_paths[index], self.mask_paths[index]
        image = read_image(image_path)
        mask = read_mask(mask_path, self.num_classes, self.ignore_index)
        if image.shape[:2] != mask.shape:
            raise DataError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} (HxW) but "
                            f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]}; they must match")
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {
            "image": preprocess(np.asarray(image), self.preprocess),
            "mask": torch.from_numpy(np.asarray(mask).astype(np.int64)),
            "id": self.ids[index],
        }
