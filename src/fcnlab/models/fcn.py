"""FCN-32s, FCN-16s and FCN-8s as heads over the one VGG16 trunk (Long, Shelhamer & Darrell,
CVPR 2015; reference nets ``voc-fcn{32,16,8}s/net.py``; facts in REFERENCE.md §2).

What makes these the paper's networks and not look-alikes:

* ``conv1_1`` pads by 100 so the coarse output still covers the image for any input size; the
  final score is cropped back into alignment. The crop offsets (19 for 32s; 5 and 27 for 16s;
  5, 9 and 31 for 8s) are *derived* from the layers' geometry by :class:`CoordMap` at
  construction, not copied, so they stay right if the geometry changes.
* Scorers (``score_fr``, ``score_pool4``, ``score_pool3``) start at zero, so a finer net initialised
  from a coarser one starts out predicting what the coarser one did.
* Upsampling is bias-free transposed convolution initialised to bilinear on the channel diagonal:
  32s: k64 s32; 16s: ``upscore2`` k4 s2 then ``upscore16`` k32 s16; 8s: ``upscore2``,
  ``upscore_pool4`` k4 s2, then ``upscore8`` k16 s8.
* Which upsamplers learn is a switch (``upsample_learn``): ``cvpr`` learns the intermediate 2×
  layers and fixes the last (the CVPR paper); ``none`` fixes all (the reference code, "no
  significant difference"); ``all`` learns all.
* FCN-8s at-once scales pool4 by 0.01 and pool3 by 0.0001 before their scorers (reference
  ``voc-fcn8s-atonce``), because it is trained in one stage from the start.
* FCN-32s-fixed trains only ``score_fr``: the trunk (``conv1_1`` … ``fc7``) is frozen.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.layers import BilinearUpsample, CoordMap, crop_like, crop_offset
from fcnlab.models.vgg import VGG16, VGG16_FC_CHANNELS

VARIANTS = ("32s", "16s", "8s")
UPSAMPLE_LEARN = ("cvpr", "none", "all")
# Scaling of the skip inputs in the at-once FCN-8s (reference voc-fcn8s-atonce/net.py).
ATONCE_POOL4_SCALE = 0.01
ATONCE_POOL3_SCALE = 0.0001


class FCN(nn.Module):
    """Fully convolutional VGG16 with 0, 1 or 2 skip connections (FCN-32s / 16s / 8s).

    Args:
        num_classes: K, including background.
        variant: ``32s``, ``16s`` or ``8s``.
        width: trunk channel multiplier (1 = the paper's network).
        at_once: scale pool4/pool3 before scoring them (FCN-8s at-once).
        upsample_learn: ``cvpr`` | ``none`` | ``all``, see the module docstring.
        freeze_trunk: freeze ``conv1_1`` … ``fc7`` (FCN-32s-fixed).
        conv1_padding: 100 in the paper; kept as an argument so the geometry is one named number.
        dropout, dropout_kind, batch_norm, fc_channels: passed to :class:`VGG16`.
    """

    def __init__(
        self,
        num_classes: int,
        variant: str = "8s",
        width: float = 1.0,
        *,
        at_once: bool = False,
        upsample_learn: str = "cvpr",
        freeze_trunk: bool = False,
        conv1_padding: int = 100,
        dropout: float = 0.5,
        dropout_kind: str = "element",
        batch_norm: bool = False,
        fc_channels: int = VGG16_FC_CHANNELS,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"FCN variant: expected one of {VARIANTS}, got {variant!r}")
        if upsample_learn not in UPSAMPLE_LEARN:
            raise ConfigError(
                f"FCN upsample_learn: expected one of {UPSAMPLE_LEARN}, got {upsample_learn!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes: expected an int >= 2, got {num_classes!r}")
        self.variant = variant
        self.num_classes = k = num_classes
        self.at_once = at_once
        self.trunk = VGG16(
            width, conv1_padding=conv1_padding, batch_norm=batch_norm, fc=True,
            fc_channels=fc_channels, dropout=dropout, dropout_kind=dropout_kind,
        )
        ch = self.trunk.out_channels
        self.score_fr = nn.Conv2d(ch["fc7"], k, 1)
        inner = upsample_learn in ("cvpr", "all")  # the 2× layers between skips
        final = upsample_learn == "all"  # the last, large upsampler
        if variant == "32s":
            self.upscore = BilinearUpsample(k, 32, learnable=final)  # 1/32 -> 1
        else:
            self.upscore2 = BilinearUpsample(k, 2, learnable=inner)  # 1/32 -> 1/16
            self.score_pool4 = nn.Conv2d(ch["pool4"], k, 1)
        if variant == "16s":
            self.upscore16 = BilinearUpsample(k, 16, learnable=final)  # 1/16 -> 1
        if variant == "8s":
            self.upscore_pool4 = BilinearUpsample(k, 2, learnable=inner)  # 1/16 -> 1/8
            self.score_pool3 = nn.Conv2d(ch["pool3"], k, 1)
            self.upscore8 = BilinearUpsample(k, 8, learnable=final)  # 1/8 -> 1
        for scorer in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(self, scorer):
                nn.init.zeros_(getattr(self, scorer).weight)
                nn.init.zeros_(getattr(self, scorer).bias)
        if freeze_trunk:
            self.trunk.requires_grad_(False)
        self.offsets = self._derive_offsets()

    def _derive_offsets(self) -> dict[str, int]:
        """Crop offsets from the coordinate maps of the actual layers (see layers.CoordMap)."""
        image = CoordMap()
        at = {n: image.through(self.trunk.layers_upto(n)) for n in ("pool3", "pool4", "fc7")}
        score = at["fc7"].then(self.score_fr)  # 1/32
        if self.variant == "32s":
            return {"score": crop_offset(image, score.then(self.upscore))}
        up2 = score.then(self.upscore2)  # 1/16
        offsets = {"score_pool4": crop_offset(up2, at["pool4"].then(self.score_pool4))}
        if self.variant == "16s":
            offsets["score"] = crop_offset(image, up2.then(self.upscore16))
            return offsets
        up4 = up2.then(self.upscore_pool4)  # 1/8
        offsets["score_pool3"] = crop_offset(up4, at["pool3"].then(self.score_pool3))
        offsets["score"] = crop_offset(image, up4.then(self.upscore8))
        return offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)
        h = self.score_fr(f["fc7"])  # 1/32
        if self.variant == "32s":
            return crop_like(self.upscore(h), self.offsets["score"], x.shape[-2:])
        h = self.upscore2(h)  # 1/16
        pool4 = f["pool4"] * ATONCE_POOL4_SCALE if self.at_once else f["pool4"]
        h = h + crop_like(self.score_pool4(pool4), self.offsets["score_pool4"], h.shape[-2:])
        if self.variant == "16s":
            return crop_like(self.upscore16(h), self.offsets["score"], x.shape[-2:])
        h = self.upscore_pool4(h)  # 1/8
        pool3 = f["pool3"] * ATONCE_POOL3_SCALE if self.at_once else f["pool3"]
        h = h + crop_like(self.score_pool3(pool3), self.offsets["score_pool3"], h.shape[-2:])
        return crop_like(self.upscore8(h), self.offsets["score"], x.shape[-2:])
