"""Class boundary maps for the BF score: the authors' BSDS ``seg2bdry`` rule, or fcnlab's old one.

The script draws one boundary map per class (``seg2bdry(gt == n, 'imageSize')`` for each class
n; SegNet-Tutorial ``Scripts/computeBFmeasure.m``, docs/reference.md §5), and the maps of two
classes share pixels (under ``seg2bdry`` both sides of a class border are the same pixels), so
they cannot live in one label map. Here all classes of an image are drawn at once as a *bit
field*: an integer map whose bit c is class c's map (``class_bits``), so drawing and dilating cost
one pass over the image whatever the number of classes. At most ``BITS`` classes per field;
callers take classes in groups of ``BITS``.

seg2bdry is BSDS500 ``BSR/bench/benchmarks/seg2bdry.m`` (P. Arbelaez), read in the copy shipped
with the MCG package and as ``lib_tools/nyuv2_seg2bdry.m`` of davidstutz/superpixel-benchmark.
"""

from __future__ import annotations

import torch
from torch import Tensor

DRAWING = {
    "seg2bdry": "BSDS seg2bdry(mask, 'imageSize') per class (the script): a pixel is on class "
    "c's boundary when the 2 x 2 block it opens (itself, right, below, below-right) holds c and "
    "not only c; in the last row / column only the pair with the right / lower pixel counts; "
    "never the bottom-right pixel",
    "inner4_void": "fcnlab_v1: a pixel of class c with a 4-neighbour that is not c (void "
    "included); the image border is no boundary",
}
BITS = 62  # classes per int64 bit field (bit 63, the sign, unused)


def _dtype(n: int) -> torch.dtype:
    return torch.int16 if n <= 15 else torch.int32 if n <= 31 else torch.int64


def class_bits(labels: Tensor, lo: int, hi: int) -> Tensor:
    """Bit field of classes lo..hi-1 (hi - lo <= BITS): bit c - lo set where ``labels == c``.

    ``labels`` N x H x W (long); any other value (void) sets no bit."""
    inside = (labels >= lo) & (labels < hi)
    one = torch.ones((), dtype=_dtype(hi - lo), device=labels.device)
    shift = (labels - lo).clamp(0, hi - lo - 1).to(one.dtype)
    return torch.where(inside, one << shift, torch.zeros_like(one))


def seg2bdry(bits: Tensor) -> Tensor:
    """BSDS ``seg2bdry(labels == c, 'imageSize')`` for every class c of a bit field ``... x H x W``.

    seg2bdry.m marks the mask's edgels on a (2H+1) x (2W+1) grid, sets a grid corner when any of
    its four edgels is set, copies the outer rows / columns from their neighbours and keeps the
    pixel-corner positions. Worked out per output pixel (i, j), 0-based, for a mask m:

    - i < H-1, j < W-1: 1 when the 2 x 2 block rows i..i+1, cols j..j+1 of m is not constant;
    - last row i = H-1, j < W-1: m[i, j] != m[i, j+1];
    - last column j = W-1, i < H-1: m[i, j] != m[i+1, j];
    - bottom-right pixel: 0 (its grid position is one no edgel sets).

    The boundary is one pixel wide, half a pixel up-left of the true border: on the mask's side
    along its bottom / right edges, outside it along its top / left edges. On a bit field, "block
    not constant for class c" is bit c of (OR of the 4 pixels) AND NOT (AND of the 4 pixels), and
    "a pair differs" is bit c of their XOR. Checked against a line-by-line NumPy port of the .m
    file in tests/metrics/test_boundary_script.py.
    """
    b = bits
    out = torch.zeros_like(b)
    tl, tr, bl, br = b[..., :-1, :-1], b[..., :-1, 1:], b[..., 1:, :-1], b[..., 1:, 1:]
    out[..., :-1, :-1] = (tl | tr | bl | br) & ~(tl & tr & bl & br)
    out[..., -1, :-1] = b[..., -1, :-1] ^ b[..., -1, 1:]
    out[..., :-1, -1] = b[..., :-1, -1] ^ b[..., 1:, -1]
    return out


def inner4_void(bits: Tensor) -> Tensor:
    """fcnlab_v1's boundary for every class of a bit field: a pixel's own class bit when a
    4-neighbour inside the image lacks it (a pixel holds one class, so "is not c", void
    included)."""
    b = bits
    out = torch.zeros_like(b)
    out[..., 1:, :] |= b[..., 1:, :] & ~b[..., :-1, :]
    out[..., :-1, :] |= b[..., :-1, :] & ~b[..., 1:, :]
    out[..., :, 1:] |= b[..., :, 1:] & ~b[..., :, :-1]
    out[..., :, :-1] |= b[..., :, :-1] & ~b[..., :, 1:]
    return out


def draw(bits: Tensor, rule: str) -> Tensor:
    """Boundary bit field of ``bits`` under ``rule`` (a key of ``DRAWING``)."""
    return seg2bdry(bits) if rule == "seg2bdry" else inner4_void(bits)


def bit_counts(bits: Tensor, n: int) -> Tensor:
    """N x n: set pixels of each of the n bits of an N x H x W bit field."""
    return torch.stack([((bits >> c) & 1).sum((-2, -1)) for c in range(n)], dim=1)


def boundary_masks(labels: Tensor, num_classes: int, rule: str) -> Tensor:
    """N x K x H x W bool boundary maps of each class (for inspection and tests)."""
    out = []
    for lo in range(0, num_classes, BITS):
        n = min(BITS, num_classes - lo)
        b = draw(class_bits(labels, lo, lo + n), rule)
        out += [((b >> c) & 1).bool() for c in range(n)]
    return torch.stack(out, dim=1)
