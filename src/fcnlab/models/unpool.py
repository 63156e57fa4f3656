"""Upsampling parts: nearest-neighbour, bed-of-nails and max unpooling, learnt transposed convolution
and fixed bilinear (docs/reference.md §2, "Decoder parts"), as swappable decoder parts.

Every part has the same call signature ``forward(x, indices=None, output_size=None)`` so that a
decoder (SegNet here) can take any of them from the config:

* ``nearest`` — :class:`NearestUnpool`: repeat every element ``scale``×``scale`` times.
* ``bed_of_nails`` — :class:`BedOfNailsUnpool`: the value at the top-left of each cell, zeros
  elsewhere.
* ``max`` — :class:`MaxUnpool`: the value at the position of the maximum recorded by the matching
  max pool (``indices``), zeros elsewhere. SegNet's decoder (Badrinarayanan et al.).
* ``deconv`` — :class:`TransposedConvUpsample`: learnable, bias-free transposed convolution
  initialised to bilinear interpolation on the channel diagonal (FCN's upsampler).
* ``bilinear`` — :class:`BilinearResize`: fixed bilinear interpolation.

``indices`` is used by ``max`` only; the others ignore it. ``output_size`` is the size of the map
before the matching pool (the last two entries of a shape are used). A pool that rounds up
(Caffe, ``ceil_mode=True``) turns 45 rows into 23, and 23 rows unpool to 46; ``output_size`` says
to keep 45. Pooled pixel ``i`` covers pre-pool pixels ``scale*i`` … ``scale*i + scale - 1`` (the
windows start at 0), so for the repeating parts the extra row is the last one and is cut at the
bottom/right; a larger ``output_size`` is padded there (replicated for ``nearest``, zeros for
``bed_of_nails``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.layers import BilinearUpsample, CoordMap, crop_offset


def _hw(output_size) -> tuple[int, int] | None:
    """``(H, W)`` from ``None``, a pair or a full shape (``torch.Size`` included)."""
    if output_size is None:
        return None
    h, w = tuple(output_size)[-2:]
    return int(h), int(w)


def _fit(x: torch.Tensor, output_size, pad_mode: str) -> torch.Tensor:
    """Crop or pad ``x`` at the bottom/right to ``output_size`` (no-op when ``None``)."""
    hw = _hw(output_size)
    if hw is None:
        return x
    h, w = hw
    x = x[..., :h, :w]
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    if dh or dw:
        x = F.pad(x, (0, dw, 0, dh), mode=pad_mode)
    return x


class NearestUnpool(nn.Module):
    """Nearest-neighbour unpooling: every element repeated ``scale``×``scale`` times."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = int(scale)

    def forward(self, x, indices=None, output_size=None):
        s = self.scale
        y = x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
        return _fit(y, output_size, "replicate")

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class BedOfNailsUnpool(nn.Module):
    """"Bed of nails" unpooling: each value at the top-left of its ``scale``×``scale`` cell."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = int(scale)

    def forward(self, x, indices=None, output_size=None):
        s = self.scale
        n, c, h, w = x.shape
        y = x.new_zeros(n, c, h * s, w * s)
        y[..., ::s, ::s] = x
        return _fit(y, output_size, "constant")

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MaxUnpool(nn.Module):
    """Max unpooling with the argmax ``indices`` stored by the matching max pool (SegNet).

    ``indices`` index the flattened pre-pool map, also for a ``ceil_mode`` pool over an odd size;
    pass that map's size as ``output_size`` (without it PyTorch assumes ``(h-1)*stride + kernel``).
    """

    def __init__(self, kernel: int = 2, stride: int = 2):
        super().__init__()
        self.kernel = int(kernel)
        self.stride = int(stride)

    def forward(self, x, indices=None, output_size=None):
        if indices is None:
            raise ValueError("MaxUnpool needs the indices returned by the matching max pool")
        return F.max_unpool2d(x, indices, self.kernel, self.stride, output_size=_hw(output_size))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


class TransposedConvUpsample(nn.Module):
    """Learnable upsampling by ``scale``: a bias-free transposed convolution initialised to bilinear
    interpolation on the channel diagonal (:class:`~fcnlab.models.layers.BilinearUpsample`, kernel
    ``2*scale - scale % 2``, stride ``scale``, no padding), cropped into alignment.

    The crop is derived, not guessed: :class:`CoordMap` composes the pool this part undoes
    (``scale``×``scale``, stride ``scale``) with the transposed convolution, giving where pre-pool
    pixel 0 lands in the upsampled map (1 for ``scale=2``: pooled pixel ``i`` is centred on pre-pool
    coordinate ``2i + 0.5`` and lands at ``2i + 1.5``). The output is cropped from there, to
    ``output_size`` or by default to ``scale`` × the input size. On that grid the interior equals
    ``F.interpolate(..., scale_factor=scale, mode="bilinear", align_corners=False)``; the outermost
    ``scale/2`` pixels differ because the transposed conv has no neighbour beyond the border.
    """

    def __init__(self, channels: int, scale: int = 2, learnable: bool = True):
        super().__init__()
        self.scale = s = int(scale)
        self.up = BilinearUpsample(channels, s, kernel_size=2 * s - s % 2, learnable=learnable)
        pooled = CoordMap().then(nn.MaxPool2d(s, s))
        self.offset = crop_offset(CoordMap(), pooled.then(self.up))

    def forward(self, x, indices=None, output_size=None):
        hw = _hw(output_size) or (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        y = self.up(x)
        o = self.offset
        if y.shape[-2] < o + hw[0] or y.shape[-1] < o + hw[1]:
            raise ValueError(
                f"TransposedConvUpsample: cannot produce {hw} from {tuple(x.shape[-2:])}")
        return y[..., o : o + hw[0], o : o + hw[1]]

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


class BilinearResize(nn.Module):
    """Fixed bilinear interpolation to ``output_size`` (``align_corners=False``); without it, by
    ``scale``."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = int(scale)

    def forward(self, x, indices=None, output_size=None):
        hw = _hw(output_size)
        if hw is None:
            return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


# kind -> factory(channels of the map to upsample); only ``deconv`` has weights and needs them.
UNPOOL_KINDS: dict[str, Callable[[int], nn.Module]] = {
    "max": lambda channels: MaxUnpool(),
    "nearest": lambda channels: NearestUnpool(),
    "bed_of_nails": lambda channels: BedOfNailsUnpool(),
    "deconv": lambda channels: TransposedConvUpsample(channels),
    "bilinear": lambda channels: BilinearResize(),
}


def check_unpool(kind) -> str:
    if not isinstance(kind, str) or kind not in UNPOOL_KINDS:
        raise ConfigError(f"model.net.unpool: expected one of {list(UNPOOL_KINDS)}, got {kind!r}")
    return kind


def make_unpool(kind: str, channels: int) -> nn.Module:
    """The 2× upsampling part called ``kind`` for a map with ``channels`` channels."""
    return UNPOOL_KINDS[check_unpool(kind)](channels)


__all__: Sequence[str] = [
    "BedOfNailsUnpool", "BilinearResize", "MaxUnpool", "NearestUnpool", "TransposedConvUpsample",
    "UNPOOL_KINDS", "make_unpool",
]
