"""Small building blocks shared by the networks: bilinear upsampling, cropping, coordinate maps.

The coordinate-map algebra is how the FCN crop offsets are *derived* here instead of being copied
as magic numbers (pytorch-fcn hard-codes 19 / 5, 27 / 9, 31). Every spatial layer maps the
coordinate of a pixel centre in its input to a coordinate in its output by an affine function;
composing them from the image to a feature map gives, for the map's pixel grid, where image pixel 0
lands. A crop that aligns a map with the image (or with another map) is that offset. This follows
the idea of Caffe's ``coord_map.py`` used by the reference ``net.py`` files (docs/reference.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn


@dataclass(frozen=True)
class CoordMap:
    """``out = scale * image + offset``: where an image coordinate lands in a feature map.

    Fractions keep the arithmetic exact, so an offset that should be an integer either is one or
    the geometry is wrong (and :func:`crop_offset` says so).
    """

    scale: Fraction = Fraction(1)
    offset: Fraction = Fraction(0)

    def then(self, layer: nn.Module) -> "CoordMap":
        """Compose with one more layer (conv, pool or transposed conv); others map 1:1."""
        if isinstance(layer, nn.ConvTranspose2d):
            k, s, p, d = _geom(layer)
            # A transposed conv places input pixel x at output s*x - p, spread over a kernel of
            # extent d*(k-1)+1 whose centre is (d*(k-1))/2 further on.
            return CoordMap(self.scale * s, self.offset * s + Fraction(d * (k - 1), 2) - p)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = _geom(layer)
            # Output pixel y sees inputs s*y - p ... s*y - p + d*(k-1); its centre is the mean.
            return CoordMap(self.scale / s, (self.offset + p - Fraction(d * (k - 1), 2)) / s)
        return self

    def through(self, layers) -> "CoordMap":
        out = self
        for layer in layers:
            out = out.then(layer)
        return out


def _pair_first(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"anisotropic geometry {v} is not supported by CoordMap")
        return int(v[0])
    return int(v)


def _geom(layer: nn.Module) -> tuple[int, int, int, int]:
    k = _pair_first(layer.kernel_size)
    s = _pair_first(layer.stride)
    p = _pair_first(layer.padding)
    d = _pair_first(getattr(layer, "dilation", 1))
    return k, s, p, d


def crop_offset(coarse: CoordMap, fine: CoordMap) -> int:
    """Offset at which to crop the map ``fine`` so that it lies on the grid of ``coarse``.

    Both maps must have the same scale (same stride w.r.t. the image). The difference of their
    offsets must be a non-negative integer; anything else means the layers do not align.
    """
    if coarse.scale != fine.scale:
        raise ValueError(f"cannot align maps of different scale {coarse.scale} vs {fine.scale}")
    delta = fine.offset - coarse.offset
    if delta.denominator != 1 or delta < 0:
        raise ValueError(f"maps do not align on an integer grid (offset {delta})")
    return int(delta)


def crop_like(x: torch.Tensor, offset: int, ref_hw: tuple[int, int]) -> torch.Tensor:
    """Caffe ``Crop`` layer: take ``ref_hw`` pixels starting at ``offset`` on both axes."""
    h, w = ref_hw
    if x.shape[-2] < offset + h or x.shape[-1] < offset + w:
        raise RuntimeError(
            f"cannot crop {tuple(x.shape[-2:])} at offset {offset} to {(h, w)}: the map is too small"
        )
    return x[..., offset : offset + h, offset : offset + w]


def bilinear_kernel(size: int) -> torch.Tensor:
    """The ``size``×``size`` bilinear interpolation filter used to initialise FCN upsamplers.

    Same formula as the reference ``surgery.upsample_filt``: a separable tent centred on the
    kernel, ``(1 - |x - c| / f)`` with ``f = ceil(size / 2)``.
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    tent = 1 - torch.abs(og - center) / factor
    return (tent[:, None] * tent[None, :]).float()


class BilinearUpsample(nn.ConvTranspose2d):
    """Bias-free transposed convolution initialised to bilinear interpolation.

    The filter sits on the channel diagonal only (class c upsamples class c), as in the FCN
    reference ``surgery.interp``; off-diagonal weights start at zero. ``learnable=False`` freezes it
    (the reference code fixes every upsampler; the CVPR paper fixes only the last one).
    """

    def __init__(self, channels: int, factor: int, kernel_size: int | None = None,
                 learnable: bool = True):
        kernel_size = kernel_size or 2 * factor
        super().__init__(channels, channels, kernel_size, stride=factor, bias=False)
        self.factor = factor
        self.reset_parameters()
        self.weight.requires_grad_(learnable)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if not hasattr(self, "factor"):  # called by nn.ConvTranspose2d.__init__ before we are set up
            return
        self.weight.zero_()
        kernel = bilinear_kernel(self.kernel_size[0])
        for c in range(self.in_channels):
            self.weight[c, c] = kernel

    def extra_repr(self) -> str:
        return super().extra_repr() + f", learnable={self.weight.requires_grad}"
