"""The one VGG16 trunk every network here is built on (docs/reference.md §2).

Five blocks of 3×3 convolutions (64, 128, 256, 512, 512 channels; 2, 2, 3, 3, 3 convs), each
ending in a 2×2 stride-2 max pool that rounds sizes *up* like Caffe (``ceil_mode=True``), then the
classifier's fully connected layers as convolutions: ``fc6`` (7×7, 4096) and ``fc7`` (1×1, 4096),
each with ReLU and dropout 0.5. Layer names are the paper's (``conv1_1`` … ``pool5``, ``fc6``,
``fc7``) so weight surgery is a key copy.

``width`` scales every channel count (1 = the paper's network; 1/8 makes CPU runs feasible), so the
embedded and paper scales are the same code with a different number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fcnlab.errors import ConfigError

# (channels, number of convs) per block, VGG16 configuration "D" (Simonyan & Zisserman 2015).
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG16_FC_CHANNELS = 4096
VGG16_FC6_KERNEL = 7  # fc6 sees the 7×7 pool5 map of a 224×224 image


def scaled(channels: int, width: float) -> int:
    """Channel count at a given width multiplier (never below 1)."""
    return max(1, int(round(channels * width)))


def check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ConfigError(
            f"model width: expected a number in (0, 1] (1 = the paper's VGG16, 0.125 = 1/8), "
            f"got {width!r}"
        )
    return float(width)


class VGG16(nn.Module):
    """VGG16 convolutions, optionally followed by the convolutionalized ``fc6``/``fc7``.

    ``forward`` returns a dict of the maps later heads tap: ``pool1`` … ``pool5`` and, with
    ``fc=True``, ``fc7``. With ``return_indices=True`` it also returns ``indices{b}`` and
    ``size{b}`` (the pre-pool size) for every block, which max-unpooling decoders need.

    Args:
        width: channel multiplier, see :func:`scaled`.
        conv1_padding: padding of ``conv1_1``; 100 in the FCN reference nets so that the output can
            be cropped back into alignment for any input size, 1 elsewhere.
        batch_norm: BN after every convolution (SegNet, DeconvNet and the SegNet benchmark's
            variants of FCN and DeepLab).
        fc: build ``fc6``/``fc7``.
        fc_channels: width of ``fc6``/``fc7`` before ``width`` scaling (4096 in VGG16).
        fc6_kernel, fc6_dilation, fc6_padding: geometry of ``fc6`` (7×7 undilated for FCN).
        dropout, dropout_kind: after ``fc6`` and ``fc7``; Caffe's dropout is element-wise
            (``element``); ``channel`` drops whole feature maps (``nn.Dropout2d``), a deviation.
        pools: per block ``(kernel, stride, padding)`` of the max pool.
        dilations: per block dilation of its 3×3 convolutions.
        return_indices: keep every pool's argmax indices (for max-unpooling decoders).
        ceil_mode: round pooled sizes up as Caffe does (the default, as released); ``False`` is
            PyTorch's floor rounding.
        fc6_input_pool: ``(kernel, stride, padding)`` of a parameter-free average pool between
            ``pool5`` and ``fc6`` (DeepLab-LargeFOV's ``pool5a``), or None. Caffe's AVE pooling
            divides by the whole window, padding included (``count_include_pad=True``).
    """

    def __init__(
        self,
        width: float = 1.0,
        *,
        conv1_padding: int = 1,
        batch_norm: bool = False,
        fc: bool = True,
        fc_channels: int = VGG16_FC_CHANNELS,
        fc6_kernel: int = VGG16_FC6_KERNEL,
        fc6_dilation: int = 1,
        fc6_padding: int = 0,
        dropout: float = 0.5,
        dropout_kind: str = "element",
        pools: Sequence[Sequence[int]] = ((2, 2, 0),) * 5,
        dilations: Sequence[int] = (1,) * 5,
        return_indices: bool = False,
        ceil_mode: bool = True,
        fc6_input_pool: Sequence[int] | None = None,
    ):
        super().__init__()
        self.width = check_width(width)
        if dropout_kind not in ("element", "channel"):
            raise ConfigError(f"dropout_kind: expected 'element' or 'channel', got {dropout_kind!r}")
        self.batch_norm = batch_norm
        self.return_indices = return_indices
        self.has_fc = fc
        self.order: list[str] = []  # spatial layers in forward order, for coordinate maps
        in_ch = 3
        for b, ((channels, n_convs), pool, dil) in enumerate(zip(VGG16_BLOCKS, pools, dilations), 1):
            out_ch = scaled(channels, width)
            for i in range(1, n_convs + 1):
                pad = conv1_padding if (b, i) == (1, 1) else dil
                self._add(f"conv{b}_{i}", nn.Conv2d(in_ch, out_ch, 3, padding=pad, dilation=dil))
                if batch_norm:
                    setattr(self, f"conv{b}_{i}_bn", nn.BatchNorm2d(out_ch))
                in_ch = out_ch
            k, s, p = pool
            self._add(f"pool{b}", nn.MaxPool2d(k, s, p, ceil_mode=ceil_mode,
                                                     return_indices=return_indices))
        self.out_channels = {f"pool{b}": scaled(c, width) for b, (c, _) in enumerate(VGG16_BLOCKS, 1)}
        self.has_fc6_input_pool = fc and fc6_input_pool is not None
        if self.has_fc6_input_pool:
            k, s, p = fc6_input_pool
            self._add("pool5a", nn.AvgPool2d(k, s, p, ceil_mode=ceil_mode,
                                             count_include_pad=True))
        if fc:
            fc_ch = scaled(fc_channels, width)
            drop = nn.Dropout if dropout_kind == "element" else nn.Dropout2d
            self._add("fc6", nn.Conv2d(in_ch, fc_ch, fc6_kernel, padding=fc6_padding,
                                       dilation=fc6_dilation))
            if batch_norm:
                self.fc6_bn = nn.BatchNorm2d(fc_ch)
            self.drop6 = drop(dropout)
            self._add("fc7", nn.Conv2d(fc_ch, fc_ch, 1))
            if batch_norm:
                self.fc7_bn = nn.BatchNorm2d(fc_ch)
            self.drop7 = drop(dropout)
            self.out_channels["fc7"] = fc_ch
        self.reset_parameters()

    def _add(self, name: str, layer: nn.Module) -> None:
        setattr(self, name, layer)
        self.order.append(name)

    def layers_upto(self, name: str) -> list[nn.Module]:
        """The spatial layers from the input up to and including ``name`` (for coordinate maps)."""
        return [getattr(self, n) for n in self.order[: self.order.index(name) + 1]]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He initialisation for training from scratch; pretrained weights overwrite it."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def conv_bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, name)(x)
        if self.batch_norm:
            x = getattr(self, f"{name}_bn")(x)
        return torch.relu_(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for b, (_, n_convs) in enumerate(VGG16_BLOCKS, 1):
            for i in range(1, n_convs + 1):
                x = self.conv_bn_relu(f"conv{b}_{i}", x)
            if self.return_indices:
                out[f"size{b}"] = x.shape[-2:]
                x, out[f"indices{b}"] = getattr(self, f"pool{b}")(x)
            else:
                x = getattr(self, f"pool{b}")(x)
            out[f"pool{b}"] = x
        if self.has_fc:
            if self.has_fc6_input_pool:
                x = self.pool5a(x)
            x = self.drop6(self.conv_bn_relu("fc6", x))
            x = self.drop7(self.conv_bn_relu("fc7", x))
            out["fc7"] = x
        return out


IMAGENET_CLASSES = 1000


class VGG16Classifier(nn.Module):
    """VGG16 (configuration D) as an ImageNet classifier, in the torchvision module layout.

    ``features`` (convs, optional BN, ReLU, floor-mode 2×2 max pools), ``avgpool``
    (``AdaptiveAvgPool2d(7)``: the identity at 224×224), ``classifier`` (fc6, ReLU, Dropout, fc7,
    ReLU, Dropout, fc8). ``width`` scales every channel count and the fc width exactly as in
    :class:`~fcnlab.models.vgg.VGG16`, so a width-w classifier converts into a width-w trunk.
    """

    def __init__(self, width: float = 1.0, *, num_classes: int = IMAGENET_CLASSES,
                 batch_norm: bool = False, dropout: float = 0.5,
                 fc_channels: int = VGG16_FC_CHANNELS):
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        in_ch = 3
        for channels, n_convs in VGG16_BLOCKS:
            out_ch = scaled(channels, width)
            for _ in range(n_convs):
                layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out_ch))
                layers.append(nn.ReLU(inplace=True))
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(VGG16_FC6_KERNEL)
        fc = scaled(fc_channels, width)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch * VGG16_FC6_KERNEL ** 2, fc),  # fc6: flattened 7×7 pool5 -> fc
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, num_classes),  # fc8
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """torchvision's VGG initialisation (He for convs, N(0, 0.01) for the fc layers)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))  # N × (C·7·7), channel-major like fc6's kernel
