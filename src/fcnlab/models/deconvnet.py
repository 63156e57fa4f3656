"""DeconvNet (Noh, Hong & Han, ICCV 2015; released ``DeconvNet_inference_deploy.prototxt``;
facts in docs/reference.md §2) over the one VGG16 trunk.

What makes this the paper's network and not a look-alike:

* Encoder: the 13 VGG16 convolutions, each conv → BN → ReLU, ``conv1_1`` padded by 1; every 2×2
  max pool (Caffe rounding, ``ceil_mode=True``) keeps its argmax indices and its pre-pool size.
* ``fc6`` is a *valid* 7×7 convolution (no padding) and ``fc7`` a 1×1, both ``fc_channels`` wide
  (4096 as released) with BN + ReLU and **no dropout**. On a pool5 map of ``p`` pixels fc6 leaves
  ``p - 6`` (1×1 at the paper's 224×224 input).
* ``fc6_deconv``: 7×7 transposed convolution ``fc_channels`` → 512 + BN + ReLU, which brings the
  ``p - 6`` map back to exactly ``p``.
* Five mirrored decoder blocks, each [unpool to the stored pre-pool size, then 3×3 "deconv"
  layers (stride-1 transposed convolutions with padding 1, i.e. 3×3 convolutions) + BN + ReLU]:
  ``deconv5_1..3`` 512, 512, 512 | ``deconv4_1..3`` 512, 512, 256 | ``deconv3_1..3`` 256, 256, 128
  | ``deconv2_1..2`` 128, 64 | ``deconv1_1..2`` 64, 64. The decoder layers are
  ``nn.ConvTranspose2d`` like the prototxt's ``Deconvolution`` layers, so Caffe weights copy
  with the same (in, out, k, k) layout.
* ``seg_score``: 1×1 (a ``Deconvolution`` in the prototxt too) to K classes: the logits, no BN
  or ReLU.
* The unpooling is a swappable decoder part (``unpool``: ``max`` = the paper's max-unpooling with
  the stored switches; the others are the alternatives of docs/reference.md §2, see
  :mod:`fcnlab.models.unpool`).

Because fc6 is a valid 7×7 convolution, the pool5 map must be at least 7×7: the smallest input
is computed from the trunk's pooling geometry (193×193 with five ceil-mode 2×2 pools: pool5 is
``ceil(H / 32)``), and a smaller input raises one clear :class:`ConfigError`.

Parameters at width 1, K = 21, fc 4096: 251,805,653 learnable (docs/reference.md §2: ~251.8M).
The SegNet benchmark says it cut the fc layers to 1024 (``fc_channels=1024``): 81,917,259 at K = 11
(its text: ~82M), although its model-size table implies ~219M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.unpool import check_unpool, make_unpool
from fcnlab.models.vgg import VGG16, VGG16_FC6_KERNEL, VGG16_FC_CHANNELS, scaled

# Decoder blocks, deepest first: (block number, output channels of its deconvs), unscaled.
DECODER_BLOCKS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64, 64)),
)
FC6_DECONV_CHANNELS = 512


def pooled_size(size: int, pool: nn.MaxPool2d) -> int:
    """Output length of a max pool along one axis, PyTorch/Caffe rounding rules (0 if none)."""
    k, s, p = (_first(v) for v in (pool.kernel_size, pool.stride, pool.padding))
    span = size + 2 * p - k
    if span < 0:
        return 0
    if pool.ceil_mode:
        out = math.ceil(span / s) + 1
        if (out - 1) * s >= size + p:  # the last window must start inside the input or left pad
            out -= 1
    else:
        out = span // s + 1
    return out


def _first(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


class DeconvNet(nn.Module):
    """VGG16 + BN encoder, fc6/fc7, ``fc6_deconv`` and a mirrored unpool + deconv decoder.

    Args:
        num_classes: K, including background.
        width: channel multiplier (1 = the paper's network).
        fc_channels: width of ``fc6``/``fc7`` before ``width`` scaling: 4096 as released, 1024
            per the SegNet benchmark's text.
        unpool: decoder unpooling kind, given to :func:`fcnlab.models.unpool.make_unpool`
            (``max``: the paper's max-unpooling with the encoder's switches).
        min_block1_channels: lower bound on the width of ``deconv1_1``/``deconv1_2``, the two
            layers after the last unpooling whose output the 1×1 ``seg_score`` classifies. 0 (the
            default) = plain width scaling, the paper's 64 at width 1, where any bound ≤ 64 is a
            no-op. At width 1/8 they are 8 channels wide, and a 1×1 classifier over 8 post-ReLU
            channels kept DeconvNet at the all-background floor on the synthetic data (200×200,
            batch 5, Adam 1e-3, direct loop): val mean IU 7.18 (floor 7.18) at 300 iterations,
            while 64 channels reached 9.8 at 200 iterations like SegNet (9.8; SegNet's last layer
            is a 3×3 conv, 72 inputs per pixel). 16 was not enough (7.18 at 600 iterations in
            experiment=segnet_table_embedded). A scale deviation, not the paper.
            These layers come after ``unpool1``, so no switch shape constrains them.
        fc6_padding: 0 = the paper's valid 7×7 ``fc6`` (inputs ≥ 193×193); 3 = same-padded, a
            deviation that lets DeconvNet run on images whose pool5 is under 7×7 (the embedded
            96×128 pictures: pool5 3×4), with ``fc6_deconv`` padded alike so the map returns to
            pool5's size; the taps that fall on padding read zeros, as FCN's aligned geometry.
    """

    def __init__(self, num_classes: int, width: float = 1.0, *,
                 fc_channels: int = VGG16_FC_CHANNELS, unpool: str = "max",
                 min_block1_channels: int = 0, fc6_padding: int = 0):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes: expected an int >= 2, got {num_classes!r}")
        if isinstance(fc_channels, bool) or not isinstance(fc_channels, int) or fc_channels < 1:
            raise ConfigError(
                f"DeconvNet fc_channels: expected a positive int, got {fc_channels!r}"
            )
        if isinstance(fc6_padding, bool) or fc6_padding not in (0, VGG16_FC6_KERNEL // 2):
            raise ConfigError(f"DeconvNet fc6_padding: expected 0 (the paper's valid 7x7 fc6) or "
                              f"{VGG16_FC6_KERNEL // 2} (same-padded), got {fc6_padding!r}")
        if (isinstance(min_block1_channels, bool) or not isinstance(min_block1_channels, int)
                or min_block1_channels < 0):
            raise ConfigError(f"DeconvNet min_block1_channels: expected an int >= 0, got "
                              f"{min_block1_channels!r}")
        self.num_classes = num_classes
        self.min_block1_channels = min_block1_channels
        self.unpool_kind = check_unpool(unpool)
        self.fc6_kernel = VGG16_FC6_KERNEL
        self.trunk = VGG16(
            width, conv1_padding=1, batch_norm=True, fc=True, fc_channels=fc_channels,
            fc6_kernel=self.fc6_kernel, fc6_padding=fc6_padding, dropout=0.0, return_indices=True,
        )
        fc_ch = self.trunk.out_channels["fc7"]
        ch = scaled(FC6_DECONV_CHANNELS, width)
        self.fc6_padding = fc6_padding
        # Padding p on the transposed conv undoes padding p on fc6: the map comes back to pool5's.
        self.fc6_deconv = nn.ConvTranspose2d(fc_ch, ch, self.fc6_kernel, padding=fc6_padding)
        self.fc6_deconv_bn = nn.BatchNorm2d(ch)
        self.deconvs: list[tuple[int, list[str]]] = []  # (block, deconv names) in forward order
        for b, outs in DECODER_BLOCKS:
            setattr(self, f"unpool{b}", make_unpool(unpool, ch))
            names = []
            for i, out in enumerate(outs, 1):
                out_ch = scaled(out, width)
                if b == 1:
                    out_ch = max(out_ch, min_block1_channels)
                name = f"deconv{b}_{i}"
                setattr(self, name, nn.ConvTranspose2d(ch, out_ch, 3, padding=1))
                setattr(self, f"{name}_bn", nn.BatchNorm2d(out_ch))
                names.append(name)
                ch = out_ch
            self.deconvs.append((b, names))
        self.seg_score = nn.ConvTranspose2d(ch, num_classes, 1)
        self.reset_decoder_parameters()
        self.min_input_size = self._min_input_size()

    def decoder_layer_names(self) -> list[str]:
        """``fc6_deconv``, ``deconv5_1`` … ``deconv1_2``, ``seg_score`` (not the unpool parts)."""
        return ["fc6_deconv", *(n for _, names in self.deconvs for n in names), "seg_score"]

    @torch.no_grad()
    def reset_decoder_parameters(self) -> None:
        """He initialisation of the decoder's transposed convolutions (the trunk initialises
        itself; a learnable unpool part keeps its own bilinear initialisation).

        A ConvTranspose2d weight is (in, out, k, k); ``fan_out`` of that tensor is in·k·k, the
        fan-in of the equivalent convolution.
        """
        for name in self.decoder_layer_names():
            m = getattr(self, name)
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- geometry
    def pool5_size(self, size: int) -> int:
        """pool5 length along one axis for an input of ``size`` pixels (3×3 pad-1 convs keep it)."""
        for b in range(1, 6):
            size = pooled_size(size, getattr(self.trunk, f"pool{b}"))
        return size

    def _min_input_size(self) -> int:
        size = 1
        need = self.fc6_kernel - 2 * self.fc6_padding  # pool5 length fc6 needs
        while self.pool5_size(size) < need:  # monotone in size: a short search
            size += 1
        return size

    def check_input_size(self, hw: Sequence[int]) -> None:
        h, w = (int(v) for v in hw)
        if min(h, w) < self.min_input_size:
            m, k = self.min_input_size, self.fc6_kernel
            raise ConfigError(
                f"DeconvNet needs inputs of at least {m}×{m} (pool5 must be ≥ {k}×{k} for the "
                f"{k}×{k} fc6); got {h}×{w} (pool5 {self.pool5_size(h)}×{self.pool5_size(w)})"
            )

    # ---------------------------------------------------------------- forward
    def _deconv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(getattr(self, f"{name}_bn")(getattr(self, name)(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x.shape[-2:])
        f = self.trunk(x)
        h = self._deconv("fc6_deconv", f["fc7"])  # (p5 - 6) -> p5, or p5 -> p5 when padded
        for b, names in self.deconvs:
            h = getattr(self, f"unpool{b}")(h, indices=f[f"indices{b}"], output_size=f[f"size{b}"])
            for name in names:
                h = self._deconv(name, h)
        return self.seg_score(h)
