"""Joint image/mask training augmentation (albumentations 2.x), built from a plain config.

``augment: null`` (the default in every data config) means no augmentation: the FCN protocol
trains on whole images, batch 1. A config such as ::

    augment: {scale: [0.5, 2.0], crop: [321, 321], hflip: true}

builds, in this order: RandomScale (one factor for both sides; bilinear image, **nearest** mask),
PadIfNeeded to the crop size (image filled with ``pad_image``, mask with 255 = void, padding on
the bottom/right), RandomCrop, HorizontalFlip(p=0.5). Evaluation never uses it: validation and
test images are only preprocessed and scored at the label's original resolution.

Reproducibility: the Compose gets ``seed`` (the data seed unless the config sets ``seed``). In a
DataLoader worker the dataset re-seeds it from the worker's torch seed
(:meth:`fcnlab.data.dataset.SegmentationDataset._reseed`), which PyTorch derives from the seeded
training-loader generator, so runs repeat exactly for a given ``num_workers``, while workers and
epochs still see different augmentations.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence

from fcnlab.errors import ConfigError

AUGMENT_KEYS = ("scale", "crop", "hflip", "pad_image", "seed")
# Bottom/right padding of the image: the ImageNet mean in RGB 0-255, so after mean subtraction
# the padding is ~0 in either preprocessing mode (DeepLab pads with the mean too).
DEFAULT_PAD_IMAGE = (124, 116, 104)


def _pair(key: str, value, kind, minimum) -> tuple:
    message = f"data.augment.{key}: expected two numbers [a, b], got {value!r}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(message)
    if not all(isinstance(v, kind) and not isinstance(v, bool) and v >= minimum for v in value):
        raise ConfigError(message + f" ({'ints' if kind is numbers.Integral else 'numbers'} >= "
                                    f"{minimum})")
    return tuple(value)


def crop_size(cfg: Mapping | None) -> tuple[int, int] | None:
    """The configured crop ``(H, W)``, or None when the augmentation keeps whole images."""
    if not cfg or cfg.get("crop") is None:
        return None
    h, w = _pair("crop", cfg["crop"], numbers.Integral, 1)
    return int(h), int(w)


def build_augment(cfg: Mapping | None, seed: int | None = None):
    """An albumentations ``Compose`` for ``cfg`` (keys: scale, crop, hflip, pad_image, seed),
    or None when ``cfg`` is None/empty or asks for nothing. ConfigError on unknown keys."""
    if not cfg:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"data.augment: expected null or a mapping like {{scale: [0.5, 2.0], "
                          f"crop: [321, 321], hflip: true}}, got {cfg!r}")
    unknown = sorted(set(cfg) - set(AUGMENT_KEYS))
    if unknown:
        raise ConfigError(f"data.augment: unknown keys {unknown}; expected some of "
                          f"{list(AUGMENT_KEYS)}")
    # albumentations checks PyPI for a newer version when imported unless told not to; a training
    # run must not open network connections behind the user's back.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    steps = []
    if cfg.get("scale") is not None:
        lo, hi = _pair("scale", cfg["scale"], numbers.Real, 0)
        if not 0 < lo <= hi:
            raise ConfigError(f"data.augment.scale: expected 0 < min <= max, got {[lo, hi]}")
        steps.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                                   mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    crop = crop_size(cfg)
    if crop is not None:
        fill = cfg.get("pad_image", DEFAULT_PAD_IMAGE)
        if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
            fill = (fill,) * 3
        if (isinstance(fill, (str, bytes)) or not isinstance(fill, Sequence) or len(fill) != 3
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in fill)):
            raise ConfigError(f"data.augment.pad_image: expected a number or [R, G, B], got "
                              f"{fill!r}")
        fill = tuple(float(v) for v in fill)
        steps.append(A.PadIfNeeded(min_height=crop[0], min_width=crop[1], position="top_left",
                                   border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=255))
        steps.append(A.RandomCrop(height=crop[0], width=crop[1]))
    hflip = cfg.get("hflip", False)
    if not isinstance(hflip, bool):
        raise ConfigError(f"data.augment.hflip: expected true or false, got {hflip!r}")
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if not steps:
        return None
    seed = cfg.get("seed", seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ConfigError(f"data.augment.seed: expected an int, got {seed!r}")
    return A.Compose(steps, seed=None if seed is None else int(seed))
