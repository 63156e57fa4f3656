"""Why dense beats patch-wise (FCN, CVPR 2015 §3.1, §4.4): a per-pixel patch classifier against
the dense FCN of the same weights.

Classifying every pixel by running a CNN on a patch centred on it is exact but very slow:
neighbouring patches overlap almost entirely and every patch recomputes the shared convolutions.
The fully convolutional network computes the same thing for all positions of a stride-32 grid in
one pass, sharing the work. This module builds both from one :class:`VGG16Classifier`
(torchvision layout; fc6 / fc7 / fc8 as in the classifier) and makes the correspondence exact.

**Why the convolutions are unpadded here.** VGG16's 3×3 convolutions pad by 1. Run on a crop, a
padded conv sees zeros at the crop's edges where the dense network, run on the whole image, sees
the real neighbouring pixels; the two then agree only for a 224×224 image that *is* the crop
(``tests/models/test_weights.py``). To compare per-pixel scores honestly, both sides here use the same
weights with **every convolution unpadded** ("valid"), the textbook sliding-window classifier:

* :class:`PatchClassifier` takes one ``PATCH``×``PATCH`` patch (404×404: the receptive field of
  one ``fc6`` output; 13 valid 3×3 convs and five 2×2 pools bring 404 down to the 7×7 ``pool5``
  that ``fc6`` needs) and returns the classifier's ``fc8`` scores (K values) for it.
* :class:`DenseClassifier` is the :class:`~fcnlab.models.vgg.VGG16` trunk with the classifier's
  convolutionalized weights (:func:`~fcnlab.models.weights.convolutionalize`), ``conv1_padding=0``
  and its other convs' padding set to 0, plus ``fc8`` as a 1×1 convolution. On an image it
  returns a score map whose position ``(i, j)`` is *exactly* (up to float rounding)
  ``PatchClassifier(image[:, :, 32i : 32i + 404, 32j : 32j + 404])``: a window at stride 32.

**Per-pixel.** The patch of pixel ``(y, x)`` is the window ``y - 201 … y + 202`` (and likewise in
x) of the image zero-padded by 201 (top/left) and 202 (bottom/right) (:func:`pad_for_patches`,
:func:`patch_at`): an even-sized patch is centred on the pixel to half a pixel. Patch-wise, a
H×W image costs H·W patch evaluations. Densely, one pass over the padded image gives the exact
scores of pixels ``(32i, 32j)`` (:meth:`DenseClassifier.pixel_grid`); every other pixel is either
interpolated from them (what FCN does, one pass) or computed exactly by shift-and-stitch (32² dense
passes over shifted images, each giving the pixels ``(32i + dy, 32j + dx)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnlab.models.vgg import VGG16Classifier
from fcnlab.models.weights import convolutionalize
from fcnlab.models.vgg import VGG16, VGG16_BLOCKS, VGG16_FC6_KERNEL, VGG16_FC_CHANNELS

STRIDE = 2 ** len(VGG16_BLOCKS)  # 32


def receptive_patch() -> int:
    """The input side whose valid-conv VGG16 features end in a ``fc6``-sized ``pool5`` (404)."""
    size = VGG16_FC6_KERNEL
    for _, n_convs in reversed(VGG16_BLOCKS):
        size = 2 * size + 2 * n_convs  # undo the 2×2 pool, then the n valid 3×3 convs
    return size


PATCH = receptive_patch()
BEFORE, AFTER = PATCH // 2 - 1, PATCH // 2  # pixel y's patch: rows y - BEFORE … y + AFTER


def pad_for_patches(image: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``N×C×H×W`` so that every pixel has its patch (``BEFORE`` / ``AFTER`` pixels)."""
    return F.pad(image, (BEFORE, AFTER, BEFORE, AFTER))


def patch_at(padded: torch.Tensor, y: int, x: int) -> torch.Tensor:
    """The patch of image pixel ``(y, x)`` from :func:`pad_for_patches`' output."""
    return padded[..., y : y + PATCH, x : x + PATCH]


class PatchClassifier(nn.Module):
    """A :class:`VGG16Classifier` (its very modules) run on one patch with unpadded convolutions.

    ``forward`` takes ``N×3×PATCH×PATCH`` and returns the ``N×K`` ``fc8`` scores. BatchNorm and
    dropout act as in the classifier's current mode (use ``eval()``).
    """

    def __init__(self, classifier: VGG16Classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        if tuple(patch.shape[-2:]) != (PATCH, PATCH):
            raise ValueError(f"PatchClassifier takes {PATCH}×{PATCH} patches, got "
                             f"{tuple(patch.shape[-2:])}")
        x = patch
        for layer in self.classifier.features:
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, layer.weight, layer.bias)  # unpadded
            else:
                x = layer(x)
        assert x.shape[-1] == VGG16_FC6_KERNEL, x.shape
        return self.classifier.classifier(torch.flatten(x, 1))


class DenseClassifier(nn.Module):
    """The same classifier, convolutionalized: one pass scores every stride-32 window.

    ``width`` and ``fc_channels`` are the classifier's (as given to :class:`VGG16Classifier`).
    ``forward(image)`` returns ``N×K×h×w`` with ``h = (H - PATCH) // 32 + 1`` (ceil-mode pools
    may add partial windows beyond it, which are dropped).
    """

    def __init__(self, classifier: VGG16Classifier, width: float,
                 fc_channels: int = VGG16_FC_CHANNELS):
        super().__init__()
        fc8 = classifier.classifier[-1]
        self.trunk = VGG16(width, conv1_padding=0, fc=True, fc_channels=fc_channels, dropout=0.0,
                           batch_norm=any(isinstance(m, nn.BatchNorm2d)
                                          for m in classifier.features))
        for name in self.trunk.order:
            if name.startswith("conv"):
                getattr(self.trunk, name).padding = (0, 0)  # valid, like PatchClassifier
        convolutionalize(classifier.state_dict(), self.trunk)
        self.fc8 = nn.Conv2d(fc8.in_features, fc8.out_features, 1)
        with torch.no_grad():
            self.fc8.weight.copy_(fc8.weight[:, :, None, None])
            self.fc8.bias.copy_(fc8.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = ((s - PATCH) // STRIDE + 1 for s in image.shape[-2:])
        if h < 1 or w < 1:
            raise ValueError(f"DenseClassifier needs at least {PATCH}×{PATCH} pixels, got "
                             f"{tuple(image.shape[-2:])}")
        return self.fc8(self.trunk(image)["fc7"])[..., :h, :w]

    def pixel_grid(self, image: torch.Tensor, dy: int = 0, dx: int = 0) -> torch.Tensor:
        """Exact per-pixel scores of pixels ``(32i + dy, 32j + dx)`` of ``image`` (unpadded):
        ``N×K×ceil((H - dy)/32)×ceil((W - dx)/32)``; the 32² shifts together cover every pixel."""
        padded = pad_for_patches(image)[..., dy:, dx:]
        return self(padded)

    def per_pixel(self, image: torch.Tensor) -> torch.Tensor:
        """FCN-style per-pixel scores in one pass: the exact stride-32 grid, bilinearly
        interpolated between grid pixels and replicated past the last one (exact at the grid
        pixels only)."""
        grid = self.pixel_grid(image)
        (h, w), (gh, gw) = image.shape[-2:], grid.shape[-2:]
        full = F.interpolate(grid, size=((gh - 1) * STRIDE + 1, (gw - 1) * STRIDE + 1),
                             mode="bilinear", align_corners=True)  # output pixel p = grid p/32
        full = F.pad(full, (0, max(0, w - full.shape[-1]), 0, max(0, h - full.shape[-2])),
                     mode="replicate")
        return full[..., :h, :w]


def patchwise_per_pixel(patch_net: PatchClassifier, image: torch.Tensor,
                        pixels: list[tuple[int, int]], batch: int = 16) -> torch.Tensor:
    """Patch-wise scores (``len(pixels)×K``) of the given pixels of one ``1×3×H×W`` image."""
    padded = pad_for_patches(image)
    out = []
    for start in range(0, len(pixels), batch):
        chunk = pixels[start : start + batch]
        out.append(patch_net(torch.cat([patch_at(padded, y, x) for y, x in chunk])))
    return torch.cat(out)
