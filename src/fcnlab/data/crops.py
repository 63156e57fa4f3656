"""Object-centred crops of a segmentation split, for pretraining a VGG16 classifier.

Used by :mod:`fcnlab.tasks.pretrain` (``experiment=pretrain_vgg``); the why of the crop geometry is in
that module's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset, Sampler

from fcnlab.data.transforms import preprocess as preprocess_image
from fcnlab.errors import DataError


def crop_centres(mask: np.ndarray, num_classes: int, *, ignore_index: int = 255,
                 min_pixels: int = 8, background_per_image: int = 1, background_margin: int = 16,
                 rng: np.random.Generator | None = None) -> list[tuple[int, int, int]]:
    """``(label, cy, cx)`` of the crops of one label image.

    One per object instance: each connected component (8-connectivity) of each object class
    ``1 … num_classes-1`` with at least ``min_pixels`` pixels, centred on its centre of mass
    (rounded), labelled with its class. Then up to ``background_per_image`` background crops
    (label 0), centred on background pixels whose distance to the nearest non-background pixel
    (another class or void) is at least ``background_margin``, drawn with ``rng`` (without one:
    the most distant pixels first).
    """
    mask = np.asarray(mask)
    out: list[tuple[int, int, int]] = []
    structure = np.ones((3, 3), bool)
    for cls in range(1, num_classes):
        inside = mask == cls
        if not inside.any():
            continue
        components, n = ndimage.label(inside, structure)
        sizes = ndimage.sum_labels(inside, components, index=np.arange(1, n + 1))
        keep = [i + 1 for i in range(n) if sizes[i] >= min_pixels]
        if not keep:
            continue
        for cy, cx in ndimage.center_of_mass(inside, components, keep):
            out.append((cls, int(round(cy)), int(round(cx))))
    if background_per_image > 0:
        background = mask == 0
        if background.any() and not background.all():
            distance = ndimage.distance_transform_edt(background)
        else:  # nothing else in the image: every background pixel is far enough
            distance = np.where(background, np.inf, 0.0)
        ys, xs = np.nonzero(distance >= background_margin)
        if ys.size:
            if rng is None:
                order = np.argsort(-distance[ys, xs], kind="stable")
            else:
                order = rng.permutation(ys.size)
            for j in order[:background_per_image]:
                out.append((0, int(ys[j]), int(xs[j])))
    return out


def balanced(labels: Sequence[int], per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``labels`` holding exactly ``per_class`` items of every class present.

    Drawn without replacement where a class has enough items, with replacement otherwise.
    """
    labels = np.asarray(labels)
    picks = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        picks.append(rng.choice(idx, per_class, replace=idx.size < per_class))
    return rng.permutation(np.concatenate(picks)) if picks else np.zeros(0, int)


def make_crop(image: torch.Tensor, cy: int, cx: int, size: int) -> torch.Tensor:
    """The ``size``×``size`` window of a preprocessed ``3×H×W`` image centred on ``(cy, cx)``.

    Outside the image the crop is 0, i.e. the mean colour after preprocessing: what the FCN's
    zero padding of ``conv1_1`` shows the trunk beyond the image border.
    """
    _, h, w = image.shape
    crop = image.new_zeros(image.shape[0], size, size)
    top, left = cy - size // 2, cx - size // 2
    y0, y1 = max(top, 0), min(top + size, h)
    x0, x1 = max(left, 0), min(left + size, w)
    if y1 > y0 and x1 > x0:
        crop[:, y0 - top:y1 - top, x0 - left:x1 - left] = image[:, y0:y1, x0:x1]
    return crop


class CropDataset(Dataset):
    """Object-centred crops of a list of preprocessed images: ``(crop, label)``.

    ``items`` are ``(image index, label, cy, cx)``. With ``jitter``/``hflip`` (training) each
    crop's centre is shifted by up to ``jitter`` pixels and the crop flipped half of the time,
    drawn from torch's global generator (seeded by the run's ``seed``).
    """

    def __init__(self, images: list[torch.Tensor], items: list[tuple[int, int, int, int]],
                 size: int, *, jitter: int = 0, hflip: bool = False):
        self.images, self.items, self.size = images, items, int(size)
        self.jitter, self.hflip = int(jitter), bool(hflip)

    @property
    def labels(self) -> list[int]:
        return [label for _, label, _, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        index, label, cy, cx = self.items[i]
        if self.jitter:
            dy, dx = torch.randint(-self.jitter, self.jitter + 1, (2,)).tolist()
            cy, cx = cy + dy, cx + dx
        crop = make_crop(self.images[index], cy, cx, self.size)
        if self.hflip and torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        return crop, label


class BalancedSampler(Sampler[int]):
    """Class-balanced order over a :class:`CropDataset`: each pass holds every class present
    equally often (``len(labels) // classes`` each), reshuffled every pass from ``seed``."""

    def __init__(self, labels: Sequence[int], seed: int = 0):
        self.labels = list(labels)
        self.per_class = max(1, len(self.labels) // max(1, len(set(self.labels))))
        self.seed, self.epoch = int(seed), 0

    def __len__(self) -> int:
        return self.per_class * len(set(self.labels))

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        return iter(balanced(self.labels, self.per_class, rng).tolist())


def split_crops(dataset, num_classes: int, mode: str, p: dict, seed: int,
                ) -> tuple[list[torch.Tensor], list[tuple[int, int, int, int]]]:
    """Preprocessed images and crop items ``(image index, label, cy, cx)`` of a split."""
    rng = np.random.default_rng(seed)
    images, items = [], []
    for i in range(len(dataset)):
        image, mask = dataset.load(i)
        images.append(preprocess_image(np.asarray(image), mode))
        for label, cy, cx in crop_centres(
                mask, num_classes, ignore_index=dataset.ignore_index,
                min_pixels=p["min_pixels"], background_per_image=p["background_per_image"],
                background_margin=p["background_margin"], rng=rng):
            items.append((i, label, cy, cx))
    if not items:
        raise DataError(f"{dataset.name}: no object or background crops found (min_pixels="
                        f"{p['min_pixels']}, background_margin={p['background_margin']})")
    return images, items


