"""Input preprocessing: the two conventions that pretrained VGG weights expect.

Mixing them up (torchvision weights with Caffe input or the reverse) is one of the classic reasons
FCN numbers do not reproduce (docs/reference.md §6), so the mode is always explicit.
"""

from __future__ import annotations

import numpy as np
import torch

from fcnlab.conventions import (  # noqa: F401  (re-exported)
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    PREPROCESS_MODES,
)
from fcnlab.errors import ConfigError

# The numbers live in fcnlab.conventions (the models package folds them into conv1_1 too).

_CAFFE_MEAN = np.array(CAFFE_MEAN_BGR, dtype=np.float32)
_TV_MEAN = np.array(IMAGENET_MEAN_RGB, dtype=np.float32)
_TV_STD = np.array(IMAGENET_STD_RGB, dtype=np.float32)


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known preprocessing mode, else raise ConfigError."""
    if mode not in PREPROCESS_MODES:
        raise ConfigError(f"data.preprocess: expected one of {list(PREPROCESS_MODES)}, "
                          f"got {mode!r}")
    return mode


def preprocess(image: np.ndarray, mode: str = "caffe") -> torch.Tensor:
    """H x W x 3 uint8 RGB array -> float32 tensor 3 x H x W in the convention of ``mode``.

    ``"caffe"``: BGR, 0-255, minus ``CAFFE_MEAN_BGR``.
    ``"torchvision"``: RGB, /255, minus ``IMAGENET_MEAN_RGB``, divided by ``IMAGENET_STD_RGB``.
    """
    check_mode(mode)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess: expected an H x W x 3 RGB array, got shape {image.shape}")
    x = image.astype(np.float32)
    if mode == "caffe":
        x = x[..., ::-1] - _CAFFE_MEAN
    else:
        x = (x / 255.0 - _TV_MEAN) / _TV_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def denormalize(tensor: torch.Tensor, mode: str = "caffe") -> np.ndarray:
    """Inverse of :func:`preprocess` for display: 3 x H x W tensor -> H x W x 3 uint8 RGB."""
    check_mode(mode)
    x = tensor.detach().cpu().float().numpy().transpose(1, 2, 0)
    if mode == "caffe":
        x = (x + _CAFFE_MEAN)[..., ::-1]
    else:
        x = (x * _TV_STD + _TV_MEAN) * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
