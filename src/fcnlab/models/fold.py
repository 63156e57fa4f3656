"""Fold a BatchNorm classifier's BNs into its convolutions: the plain ``vgg16`` layout.

Why: at embedded scale the VGG16 classifier that stands in for ImageNet VGG16 is trained with BN
(``pretrain.batch_norm``), because VGG16 without BN from He initialisation barely leaves chance in
the few hundred iterations a 2-core CPU affords. The networks that load it are the papers' (FCN and
DeepLab have no BN; SegNet's BNs start fresh, as from ImageNet VGG16 in SegNet §3.2). In eval mode
a BN is the per-channel affine map ``y = gamma * (x - mean) / sqrt(var + eps) + beta``, so the conv
before it can absorb it exactly (Ioffe & Szegedy 2015, §3.1: the inference-time BN is linear):
``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)`` per output
channel. The folded file computes what the BN classifier computes in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlab.models.layouts import conv_layout
from fcnlab.models.vgg import VGG16_FC6_KERNEL


@torch.no_grad()
def folded_state_dict(features: nn.Sequential,
                      classifier: nn.Sequential) -> dict[str, torch.Tensor]:
    """The plain torchvision ``vgg16`` state dict of a ``vgg16_bn``-layout classifier.

    ``features``/``classifier`` are :class:`~fcnlab.models.vgg.VGG16Classifier`'s modules built
    with ``batch_norm=True``; its BNs' running statistics (eval mode) are folded.
    """
    state: dict[str, torch.Tensor] = {}
    for (_, bn_conv, bn), (_, plain_conv, _) in zip(conv_layout(True), conv_layout(False)):
        conv, norm = features[bn_conv], features[bn]
        if not isinstance(conv, nn.Conv2d) or not isinstance(norm, nn.BatchNorm2d):
            raise TypeError(f"features[{bn_conv}], features[{bn}]: expected Conv2d and "
                            f"BatchNorm2d, got {type(conv).__name__} and {type(norm).__name__}")
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        state[f"features.{plain_conv}.weight"] = conv.weight * scale[:, None, None, None]
        state[f"features.{plain_conv}.bias"] = (conv.bias - norm.running_mean) * scale + norm.bias
    for key, value in classifier.state_dict().items():
        state[f"classifier.{key}"] = value
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


@torch.no_grad()
def centre_fc6(state: dict[str, torch.Tensor],
               kernel: int = VGG16_FC6_KERNEL) -> dict[str, torch.Tensor]:
    """``state`` with fc6 moved onto the centre tap of its 7×7 window (a new dict).

    Why: a classifier trained on crops whose pool5 is a single cell (32–63 px crops, five floor
    2×2 pools) sees that cell copied into all 49 positions by ``AdaptiveAvgPool2d(7)``, so only
    the sum of each fc6 filter's 49 taps is learnt; each tap is that shared part plus its own
    random initial value. Convolutionalized as it is (fcnlab.models.weights), fc6 would add the
    learnt part over a 7×7 box of pool5 cells 32 px apart, plus the noise. With the sum on the
    centre tap and zeros around it the classifier's outputs on its crops are unchanged (the 49
    copies are equal), and the FCN's fc6 computes at each stride-32 position exactly the
    classifier's verdict on the 32-px cell there: in effect a 1×1 fc6, a deviation the
    embedded recipe names (docs/embedded.md "The embedded ImageNet").
    """
    w = state["classifier.0.weight"]
    if w.shape[1] % (kernel * kernel):
        raise ValueError(f"classifier.0.weight {tuple(w.shape)}: "
                         f"expected fc × (C·{kernel}·{kernel})")
    taps = w.reshape(w.shape[0], -1, kernel, kernel)
    centred = torch.zeros_like(taps)
    centred[:, :, kernel // 2, kernel // 2] = taps.sum(dim=(2, 3))
    return {**state, "classifier.0.weight": centred.reshape(w.shape).contiguous()}
