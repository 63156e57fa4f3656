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

from fcnlab.models.weights import conv_layout


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
