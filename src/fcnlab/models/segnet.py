"""SegNet: an encoder-decoder over the one VGG16 trunk (Badrinarayanan, Kendall & Cipolla, PAMI
2017; SegNet-Tutorial ``Models/segnet_train.prototxt``; facts in docs/reference.md §2).

* Encoder: the 13 VGG16 convolutions, each conv → BN → ReLU; every 2×2 stride-2 max pool rounds
  up like Caffe (``ceil_mode=True``) and returns its argmax indices and the pre-pool size.
* Decoder mirrors it, block 5 down to block 1: upsample to the stored pre-pool size (by default
  max-unpooling with the stored indices; at 360×480 the pooled sizes are 23×30 and 12×15, so the
  size must be given), then 3×3 convs with BN + ReLU, channels as in the prototxt::

      conv5_3_D 512, conv5_2_D 512, conv5_1_D 512 | conv4_3_D 512, conv4_2_D 512, conv4_1_D 256 |
      conv3_3_D 256, conv3_2_D 256, conv3_1_D 128 | conv2_2_D 128, conv2_1_D 64 |
      conv1_2_D 64, conv1_1_D K

  ``conv1_1_D`` (64 → K) gives the logits directly: no BN, no ReLU.
* The upsampling part is a config switch (``unpool``: ``max`` | ``nearest`` | ``bed_of_nails`` |
  ``deconv`` | ``bilinear``, see :mod:`fcnlab.models.unpool`); only ``max`` is SegNet.
* ``dropout`` (default 0 = SegNet): element-wise dropout on the central six units, as Bayesian
  SegNet-Basic / Bayesian SegNet do (Kendall et al. 2015): after encoder blocks 3, 4, 5 (on the
  pooled map; the indices are untouched) and after decoder blocks 5, 4, 3 (after
  ``conv{b}_1_D``, before the next upsampling). The SegNet benchmark's "dropout 0.5 at the end of
  the deeper layers" is ``dropout: 0.5``; the exact placement there is not specified.
* Init: He (fan-in, ReLU) for every conv with zero bias (the tutorial's ``msra`` filler); BN
  weight 1, bias 0. The paper initialises the encoder from ImageNet VGG16 instead (its names are
  ``trunk.conv1_1`` …, so that is a key copy).

Parameters at width 1, K=11: 29,449,355 learnable (convs + BN scale/shift; BN running statistics
are buffers and not counted), of which the encoder holds 14,723,136.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.unpool import check_unpool, make_unpool
from fcnlab.models.vgg import VGG16, VGG16_BLOCKS, scaled

# Decoder plan, block 5 down to block 1: output channels of conv{b}_{n}_D … conv{b}_1_D, in forward
# order (SegNet-Tutorial segnet_train.prototxt). ``None`` is the class count K.
DECODER_BLOCKS: tuple[tuple[int, tuple[int | None, ...]], ...] = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64, None)),
)
# Blocks followed by dropout when ``dropout > 0`` (Bayesian SegNet).
DROPOUT_ENCODER_BLOCKS = (3, 4, 5)
DROPOUT_DECODER_BLOCKS = (5, 4, 3)


class SegNet(nn.Module):
    """SegNet (VGG16 encoder with pooling indices, mirrored decoder).

    Args:
        num_classes: K.
        width: channel multiplier of encoder and decoder (1 = the paper's network).
        unpool: decoder upsampling part, see :data:`fcnlab.models.unpool.UNPOOL_KINDS`.
        batch_norm: BN after every conv except the last (SegNet: on).
        dropout: rate after encoder blocks 3–5 and decoder blocks 5–3; 0 (SegNet) builds none.
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        unpool: str = "max",
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes: expected an int >= 2, got {num_classes!r}")
        check_unpool(unpool)
        if (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                or not 0 <= dropout < 1):
            raise ConfigError(f"SegNet dropout: expected a number in [0, 1), got {dropout!r}")
        self.num_classes = num_classes
        self.unpool = unpool
        self.batch_norm = batch_norm
        self.dropout = float(dropout)
        self.trunk = VGG16(width, batch_norm=batch_norm, fc=False, return_indices=True)
        width = self.trunk.width
        in_ch = self.trunk.out_channels["pool5"]
        for b, plan in DECODER_BLOCKS:
            # The map to upsample has the channels of encoder block b (what its pool produced).
            setattr(self, f"upsample{b}", make_unpool(unpool, in_ch))
            for i, channels in zip(range(len(plan), 0, -1), plan):
                last = channels is None
                out_ch = num_classes if last else scaled(channels, width)
                setattr(self, f"conv{b}_{i}_D", nn.Conv2d(in_ch, out_ch, 3, padding=1))
                if batch_norm and not last:
                    setattr(self, f"conv{b}_{i}_D_bn", nn.BatchNorm2d(out_ch))
                in_ch = out_ch
        if self.dropout:
            for b in DROPOUT_ENCODER_BLOCKS:
                setattr(self, f"encdrop{b}", nn.Dropout(self.dropout))
            for b in DROPOUT_DECODER_BLOCKS:
                setattr(self, f"decdrop{b}", nn.Dropout(self.dropout))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He init for the decoder convs (the trunk does its own), BN weight 1 / bias 0."""
        for name, m in self.named_modules():
            if name.startswith("trunk"):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The trunk's blocks one by one (so dropout can sit between them); returns pool5 and, per
        block, the argmax indices and pre-pool size."""
        trunk = self.trunk
        stored: dict[int, tuple[torch.Tensor, torch.Size]] = {}
        for b, (_, n_convs) in enumerate(VGG16_BLOCKS, 1):
            for i in range(1, n_convs + 1):
                x = trunk.conv_bn_relu(f"conv{b}_{i}", x)
            size = x.shape[-2:]
            x, indices = getattr(trunk, f"pool{b}")(x)
            stored[b] = (indices, size)
            if self.dropout and b in DROPOUT_ENCODER_BLOCKS:
                x = getattr(self, f"encdrop{b}")(x)
        return x, stored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, stored = self._encode(x)
        for b, plan in DECODER_BLOCKS:
            indices, size = stored[b]
            h = getattr(self, f"upsample{b}")(h, indices, size)
            for i, channels in zip(range(len(plan), 0, -1), plan):
                h = getattr(self, f"conv{b}_{i}_D")(h)
                if channels is None:
                    break  # conv1_1_D: the logits, no BN / ReLU
                if self.batch_norm:
                    h = getattr(self, f"conv{b}_{i}_D_bn")(h)
                h = torch.relu_(h)
            if self.dropout and b in DROPOUT_DECODER_BLOCKS:
                h = getattr(self, f"decdrop{b}")(h)
        return h
