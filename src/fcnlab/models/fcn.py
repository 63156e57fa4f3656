"""FCN-32s, FCN-16s and FCN-8s as heads over the one VGG16 trunk (Long, Shelhamer & Darrell,
CVPR 2015; reference nets ``voc-fcn{32,16,8}s/net.py``; facts in docs/reference.md §2).

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

Geometry (``geometry``):

* ``caffe`` (default) is the paper's network described above: ``conv1_1`` pads by 100 and ``fc6``
  is a valid 7×7 convolution, so even a 1×1 image gives a 7×7 ``pool5`` map. On small images
  most of the work is spent on that padding: at 96×128 the first block runs on 294×326 pixels.
* ``aligned`` is a **deviation from the paper** for speed on small images: ``conv1_1`` pads by 1
  like every other VGG convolution, and ``fc6`` is a *same*-padded 7×7 convolution (padding 3, in
  ``pool5`` cells), so the network runs on the image itself. The input is **not** padded: with
  Caffe's ceil-mode pools every map covers the image (``pool_s`` has ``ceil(H/s)`` rows) and each
  transposed convolution's output reaches past the map it upsamples, so the score covers the
  input for every size ≥ 1×1 and is cropped back to it (final offsets 16 / 8 / 4 for 32s / 16s /
  8s). With a padded ``fc6`` the upsampled coarse score starts one cell *before* the skip's map
  (offset −1), so there the upsampled map is cropped (by 1) onto the skip's grid instead of the
  skip onto the upsampled one. Every offset is still derived by :class:`CoordMap` from the
  layers. The parameters (and state-dict keys) are exactly those of ``caffe``, so weights move
  between the two geometries; what changes is what ``fc6`` sees near the image border (zeros
  beyond ``pool5`` instead of the trunk's response to 100 px of zero padding). When ``pool5`` is
  smaller than 4 cells on an axis, ``fc6``'s kernel is cropped to the taps that can touch the
  map (:class:`MapCroppedConv2d`): the same numbers, none of the 7×7 work on zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.layers import BilinearUpsample, CoordMap, crop_like, crop_offset
from fcnlab.models.vgg import VGG16, VGG16_FC6_KERNEL, VGG16_FC_CHANNELS

VARIANTS = ("32s", "16s", "8s")
UPSAMPLE_LEARN = ("cvpr", "none", "all")
GEOMETRIES = ("caffe", "aligned")
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
        geometry: ``caffe`` (the paper's padding-100 network) or ``aligned`` (a deviation: conv1_1
            padding 1, same-padded fc6, no input padding; see the module docstring).
        conv1_padding: 100 in the paper; kept as an argument so the geometry is one named number.
            Used by the ``caffe`` geometry only (``aligned`` pads conv1_1 by 1).
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
        geometry: str = "caffe",
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
        if geometry not in GEOMETRIES:
            raise ConfigError(f"FCN geometry: expected one of {GEOMETRIES}, got {geometry!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes: expected an int >= 2, got {num_classes!r}")
        self.variant = variant
        self.num_classes = k = num_classes
        self.at_once = at_once
        self.geometry = geometry
        aligned = geometry == "aligned"
        self.trunk = VGG16(
            width, conv1_padding=1 if aligned else conv1_padding, batch_norm=batch_norm, fc=True,
            fc_channels=fc_channels, dropout=dropout, dropout_kind=dropout_kind,
            fc6_padding=VGG16_FC6_KERNEL // 2 if aligned else 0,
        )
        if aligned:  # same parameters, a forward that skips the taps that only see padding
            self.trunk.fc6 = MapCroppedConv2d.sharing(self.trunk.fc6)
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
        self.freeze_trunk = freeze_trunk
        if freeze_trunk:
            self.trunk.requires_grad_(False)
        self.offsets = self._derive_offsets()

    def train(self, mode: bool = True) -> "FCN":
        """As nn.Module.train, but a frozen trunk's BNs (the embedded recipe's
        ``deviations.batch_norm``) stay in eval mode: fixed features are the loaded trunk's, so
        batch statistics must neither renormalise them nor move the running statistics. Fresh
        BNs in eval mode are the identity, so a BN-folded classifier (fcnlab.models.fold) is
        computed as it was trained; dropout keeps the mode it is given."""
        super().train(mode)
        if self.freeze_trunk:
            for m in self.trunk.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _derive_offsets(self) -> dict[str, int]:
        """Crop offsets from the coordinate maps of the actual layers (see layers.CoordMap).

        ``score_pool4`` / ``score_pool3``: where to crop the skip's scores onto the upsampled
        coarse scores (Caffe's ``Crop``). Where the upsampled map instead starts before the skip's
        (``aligned`` geometry), ``upscore2`` / ``upscore_pool4`` say where to crop the upsampled
        map onto the skip's grid. ``score``: the final crop onto the image.
        """
        image = CoordMap()
        at = {n: image.through(self.trunk.layers_upto(n)) for n in ("pool3", "pool4", "fc7")}
        score = at["fc7"].then(self.score_fr)  # 1/32
        if self.variant == "32s":
            return {"score": crop_offset(image, score.then(self.upscore))}
        offsets: dict[str, int] = {}
        h = _align(offsets, score.then(self.upscore2), at["pool4"].then(self.score_pool4),
                   "upscore2", "score_pool4")  # 1/16
        if self.variant == "16s":
            offsets["score"] = crop_offset(image, h.then(self.upscore16))
            return offsets
        h = _align(offsets, h.then(self.upscore_pool4), at["pool3"].then(self.score_pool3),
                   "upscore_pool4", "score_pool3")  # 1/8
        offsets["score"] = crop_offset(image, h.then(self.upscore8))
        return offsets

    def _merge(self, up: torch.Tensor, skip: torch.Tensor, up_name: str,
               skip_name: str) -> torch.Tensor:
        """``up + skip`` on one grid: the skip cropped onto ``up`` (Caffe), or, where the offsets
        say so (``aligned``), ``up`` cropped onto the skip's grid."""
        cs = self.offsets[skip_name]
        if up_name in self.offsets:
            hw = (skip.shape[-2] - cs, skip.shape[-1] - cs)
            return crop_like(up, self.offsets[up_name], hw) + crop_like(skip, cs, hw)
        return up + crop_like(skip, cs, up.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)
        h = self.score_fr(f["fc7"])  # 1/32
        if self.variant == "32s":
            return crop_like(self.upscore(h), self.offsets["score"], x.shape[-2:])
        h = self.upscore2(h)  # 1/16
        pool4 = f["pool4"] * ATONCE_POOL4_SCALE if self.at_once else f["pool4"]
        h = self._merge(h, self.score_pool4(pool4), "upscore2", "score_pool4")
        if self.variant == "16s":
            return crop_like(self.upscore16(h), self.offsets["score"], x.shape[-2:])
        h = self.upscore_pool4(h)  # 1/8
        pool3 = f["pool3"] * ATONCE_POOL3_SCALE if self.at_once else f["pool3"]
        h = self._merge(h, self.score_pool3(pool3), "upscore_pool4", "score_pool3")
        return crop_like(self.upscore8(h), self.offsets["score"], x.shape[-2:])


def _align(offsets: dict[str, int], up: CoordMap, skip: CoordMap, up_name: str,
           skip_name: str) -> CoordMap:
    """Record how to bring the upsampled map ``up`` and the skip map ``skip`` onto one grid and
    return that grid's coordinate map: crop the skip (Caffe) when it starts before ``up``, else
    crop ``up`` (and the skip by 0)."""
    if skip.offset >= up.offset:
        offsets[skip_name] = crop_offset(up, skip)
        return up
    offsets[up_name] = crop_offset(skip, up)
    offsets[skip_name] = 0
    return skip


class MapCroppedConv2d(nn.Conv2d):
    """A stride-1, undilated, same-padded convolution that drops the kernel taps which, on the
    map at hand, can only ever multiply padding.

    On an ``h``-row map with padding ``p`` (kernel ``2p + 1``), output row ``i`` uses taps
    ``p - i … p - i + h - 1``; over all rows that is ``p - h + 1 … p + h - 1``. When ``h <= p`` the
    taps outside that range touch only zeros, so the same result comes from the cropped kernel
    (``2h - 1`` taps, padding ``h - 1``), without the work on zeros (and without oneDNN's slow
    path for a 7×7 kernel on a tiny map). Gradients reach the used taps; the others get zero, as
    they would through the full convolution. Under ``torch.compile`` / ``torch.export`` the plain
    convolution runs (same numbers, no size-dependent branch to specialise on).
    """

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> "MapCroppedConv2d":
        """The same layer (the very same parameters), with this forward."""
        if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
                or any(k != 2 * p + 1 for k, p in zip(conv.kernel_size, conv.padding))):
            raise ValueError(f"MapCroppedConv2d needs a same-padded stride-1 conv, got {conv}")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                  bias=conv.bias is not None, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (ph, pw) = x.shape[-2:], self.padding
        if torch.compiler.is_compiling() or (h > ph and w > pw):
            return super().forward(x)
        ch, cw = min(ph, h - 1), min(pw, w - 1)  # the padding that can still matter
        weight = self.weight[..., ph - ch : ph + ch + 1, pw - cw : pw + cw + 1]
        return F.conv2d(x, weight, self.bias, padding=(ch, cw))
