"""DeepLab-LargeFOV (Chen et al., ICLR 2015, "DeepLab v1"; released LargeFOV prototxt; facts in
docs/reference.md §2) over the one VGG16 trunk.

What makes this the paper's network and not a look-alike:

* ``conv1_1`` padded by 1; pool1–3 are 3×3 stride 2 pad 1; pool4 and pool5 are 3×3 stride **1**
  pad 1, so the output stride stays 8; conv5_* are dilated by 2 (the "hole" algorithm).
* ``pool5a``: a 3×3 stride-1 pad-1 **average** pool between pool5 and ``fc6``. Both copies of the
  released train.prototxt have it; the paper does not mention it; it has no parameters
  (docs/reference.md §2). ``pool5a=False`` leaves it out.
* ``fc6``: 3×3, dilation 12, padding 12, 1024 channels (the "large field of view"); ``fc7``: 1×1,
  1024; ReLU and dropout 0.5 after both; ``fc8``: 1×1 to K, initialised N(0, 0.01²), bias 0
  (the prototxt's ``fc8_voc12``).
* Logits at stride 8 are upsampled bilinearly to the input size.

Pool rounding: Caffe rounds pooled sizes up, and the released prototxt runs in Caffe, so the
default is ``pool_ceil_mode=True``. With the padded 3×3 stride-2 pools that gives
``ceil((H - 1) / 2) + 1`` per pool: 321 → 41 (the paper's 41×41 score map for 321×321 crops), but
360×480 → **46×61**. ``pool_ceil_mode=False`` (PyTorch's default rounding) gives 45×60 at
360×480, the naive "360/8 × 480/8" of docs/reference.md §2. Both agree for inputs of size 8n + 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.vgg import VGG16

TRAIN_ON = ("upsampled", "subsampled_labels")
# (kernel, stride, padding) per block: pool1-3 halve, pool4-5 keep the size.
LARGEFOV_POOLS = ((3, 2, 1),) * 3 + ((3, 1, 1),) * 2
LARGEFOV_DILATIONS = (1, 1, 1, 1, 2)
LARGEFOV_POOL5A = (3, 1, 1)  # (kernel, stride, padding) of the released prototxt's pool5a
LARGEFOV_FC6_DILATION = 12
LARGEFOV_FC_CHANNELS = 1024
FC8_INIT_STD = 0.01


class DeepLabLargeFOV(nn.Module):
    """DeepLab v1 LargeFOV: VGG16 with stride-8 dilated convolutions and bilinear upsampling.

    Args:
        num_classes: K, including background.
        width: trunk channel multiplier (1 = the paper's network).
        fc_channels: width of ``fc6``/``fc7`` before ``width`` scaling (1024 in LargeFOV).
        dropout: after fc6 and fc7 (0.5).
        batch_norm: BN after every trunk convolution; off in DeepLab, on in the SegNet
            benchmark's variant.
        train_on: where the training loss is computed.

            * ``upsampled`` (default): forward always returns logits at the input size.
            * ``subsampled_labels`` (the paper): in training mode forward returns the **stride-8
              logits**; the caller (the LightningModule) must then subsample the labels to the
              logits' spatial size with nearest-neighbour sampling before the loss. In eval mode
              forward returns input-size logits as usual.
        upsample_align_corners: ``align_corners`` of the bilinear upsampling. Caffe's ``Interp``
            layer (DeepLab's upsampler) uses align_corners=True semantics; the default False is a
            named choice (PyTorch's half-pixel convention).
        pool_ceil_mode: Caffe rounding of pooled sizes (see the module docstring).
        pool5a: the released prototxt's 3×3 stride-1 average pool before ``fc6`` (default on).
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        fc_channels: int = LARGEFOV_FC_CHANNELS,
        dropout: float = 0.5,
        batch_norm: bool = False,
        train_on: str = "upsampled",
        upsample_align_corners: bool = False,
        pool_ceil_mode: bool = True,
        pool5a: bool = True,
    ):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes: expected an int >= 2, got {num_classes!r}")
        if train_on not in TRAIN_ON:
            raise ConfigError(f"DeepLab train_on: expected one of {TRAIN_ON}, got {train_on!r}")
        if isinstance(fc_channels, bool) or not isinstance(fc_channels, int) or fc_channels < 1:
            raise ConfigError(f"DeepLab fc_channels: expected a positive int, got {fc_channels!r}")
        self.num_classes = num_classes
        self.train_on = train_on
        self.upsample_align_corners = bool(upsample_align_corners)
        self.trunk = VGG16(
            width, conv1_padding=1, batch_norm=batch_norm, fc=True, fc_channels=fc_channels,
            fc6_kernel=3, fc6_dilation=LARGEFOV_FC6_DILATION, fc6_padding=LARGEFOV_FC6_DILATION,
            dropout=dropout, pools=LARGEFOV_POOLS, dilations=LARGEFOV_DILATIONS,
            ceil_mode=bool(pool_ceil_mode), fc6_input_pool=LARGEFOV_POOL5A if pool5a else None,
        )
        self.fc8 = nn.Conv2d(self.trunk.out_channels["fc7"], num_classes, 1)
        nn.init.normal_(self.fc8.weight, std=FC8_INIT_STD)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc8(self.trunk(x)["fc7"])  # stride 8
        if self.training and self.train_on == "subsampled_labels":
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear",
                             align_corners=self.upsample_align_corners)
