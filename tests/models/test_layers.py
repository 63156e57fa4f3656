"""Shared layers: the bilinear kernel, BilinearUpsample, CoordMap / crop geometry (docs/reference.md §2).

Every expected value here is computed independently of ``fcnlab.models.layers`` (literal numbers,
a NumPy transcription of FCN's ``surgery.upsample_filt``, or the paper's sizes), so each assertion
can fail if the implementation drifts.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from fcnlab.models import FCN
from fcnlab.models.layers import (
    BilinearUpsample,
    CoordMap,
    bilinear_kernel,
    crop_like,
    crop_offset,
)

W = 1 / 16  # small trunk: geometry does not depend on the channel count


# --- independent reference: FCN surgery.upsample_filt, verbatim in NumPy ------------------------
def upsample_filt(size: int) -> np.ndarray:
    factor = (size + 1) // 2
    if size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


# --- bilinear_kernel --------------------------------------------------------------------------------
def test_bilinear_kernel_k4_exact():
    t = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.equal(bilinear_kernel(4), torch.outer(t, t))


def test_bilinear_kernel_k3_exact():
    t = torch.tensor([0.5, 1.0, 0.5])
    assert torch.equal(bilinear_kernel(3), torch.outer(t, t))


@pytest.mark.parametrize("k", [16, 64, 5, 32])
def test_bilinear_kernel_matches_reference_and_is_symmetric(k):
    ker = bilinear_kernel(k)
    assert ker.shape == (k, k)
    ref = torch.from_numpy(upsample_filt(k)).float()
    torch.testing.assert_close(ker, ref, rtol=0, atol=1e-7)
    assert torch.equal(ker, ker.T)
    assert torch.equal(ker, ker.flip(0))
    assert torch.equal(ker, ker.flip(1))
    # peaks in the middle: the maximum sits at the central tap(s) and nowhere else
    mid = [k // 2] if k % 2 else [k // 2 - 1, k // 2]
    peak = ker.max()
    for i in range(k):
        for j in (0, k - 1):
            assert ker[i, j] < peak
    for i in mid:
        for j in mid:
            assert ker[i, j] == peak


# --- BilinearUpsample -------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [2, 8, 32])
@pytest.mark.parametrize("learnable", [True, False])
def test_bilinear_upsample_diagonal_no_bias(factor, learnable):
    c = 4
    up = BilinearUpsample(c, factor, learnable=learnable)
    assert up.bias is None
    assert up.weight.requires_grad is learnable
    assert up.kernel_size == (2 * factor, 2 * factor)
    assert up.stride == (factor, factor)
    w = up.weight.detach()
    ref = torch.from_numpy(upsample_filt(2 * factor)).float()
    for i in range(c):
        for j in range(c):
            if i == j:
                torch.testing.assert_close(w[i, j], ref, rtol=0, atol=1e-7)
            else:
                assert torch.count_nonzero(w[i, j]) == 0
    assert [n for n, _ in up.named_parameters()] == ["weight"]


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_upsample_constant_interior(factor):
    up = BilinearUpsample(2, factor, learnable=False)
    x = torch.empty(1, 2, 7, 9)
    x[:, 0] = 1.0
    x[:, 1] = -3.5
    with torch.no_grad():
        y = up(x)
    assert y.shape == (1, 2, (7 - 1) * factor + 2 * factor, (9 - 1) * factor + 2 * factor)
    inner = y[..., factor:-factor, factor:-factor]
    torch.testing.assert_close(inner[:, 0], torch.full_like(inner[:, 0], 1.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(inner[:, 1], torch.full_like(inner[:, 1], -3.5), rtol=0, atol=1e-6)
    # the border is *not* constant (the tent is truncated there): the check above is meaningful
    assert y[0, 0, 0, 0] < 0.5


@pytest.mark.parametrize("factor", [2, 8])
def test_bilinear_upsample_reproduces_linear_ramp(factor):
    h, w = 6, 10
    a, b, c0 = 0.7, -1.3, 2.0
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    x = (a * ys + b * xs + c0)[None, None]
    up = BilinearUpsample(1, factor, learnable=False)
    with torch.no_grad():
        y = up(x)[0, 0]
    # output pixel o sits at input coordinate (o - (2f - 1) / 2) / f (kernel 2f, stride f, pad 0)
    oy = (torch.arange(y.shape[0], dtype=torch.float32) - (2 * factor - 1) / 2) / factor
    ox = (torch.arange(y.shape[1], dtype=torch.float32) - (2 * factor - 1) / 2) / factor
    expect = a * oy[:, None] + b * ox[None, :] + c0
    sl = (slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(y[sl], expect[sl], rtol=0, atol=1e-5)
    # it is a real ramp, not a constant
    assert y[sl].std() > 1.0


# --- CoordMap / crop_offset / crop_like -------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_coordmap_conv_pool_stack_scale(n):
    layers = []
    for _ in range(n):
        layers += [nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1),
                   nn.MaxPool2d(2, 2, ceil_mode=True)]
    cm = CoordMap().through(layers)
    assert cm.scale == Fraction(1, 2**n)
    # a 2x2/2 pool puts output pixel y at input 2y + 1/2: offset -(1 - 2^-n) / 2 in total
    assert cm.offset == -Fraction(1, 2) * (1 - Fraction(1, 2**n))


def test_coordmap_padding_and_transpose():
    cm = CoordMap().then(nn.Conv2d(1, 1, 3, padding=100))
    assert cm == CoordMap(Fraction(1), Fraction(99))
    # a k2s2 pool then a k4s2 transposed conv comes back to scale 1
    back = CoordMap().then(nn.MaxPool2d(2, 2)).then(nn.ConvTranspose2d(1, 1, 4, stride=2))
    assert back.scale == 1
    # pool: image x -> (x - 1/2) / 2; transposed conv: input u -> 2u + (4 - 1)/2 - 0
    assert back.offset == Fraction(1)  # (-1/4)*2 + 3/2


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("32s", {"score": 19}),
        ("16s", {"score_pool4": 5, "score": 27}),
        ("8s", {"score_pool4": 5, "score_pool3": 9, "score": 31}),
    ],
)
def test_fcn_offsets_match_reference_prototxt(variant, expected):
    net = FCN(21, variant, W)
    assert net.offsets == expected
    assert all(type(v) is int for v in net.offsets.values())


def test_crop_offset_rejects_misaligned_maps():
    a = CoordMap(Fraction(1, 2), Fraction(0))
    assert crop_offset(a, CoordMap(Fraction(1, 2), Fraction(3))) == 3
    with pytest.raises(ValueError, match="integer"):
        crop_offset(a, CoordMap(Fraction(1, 2), Fraction(1, 2)))
    with pytest.raises(ValueError):
        crop_offset(a, CoordMap(Fraction(1, 2), Fraction(-2)))
    with pytest.raises(ValueError, match="scale"):
        crop_offset(a, CoordMap(Fraction(1, 4), Fraction(2)))


def test_crop_like():
    x = torch.arange(100.0).reshape(1, 1, 10, 10)
    out = crop_like(x, 3, (4, 5))
    assert out.shape == (1, 1, 4, 5)
    assert out[0, 0, 0, 0] == 33 and out[0, 0, -1, -1] == 67
    crop_like(x, 5, (5, 5))  # exactly fits
    with pytest.raises(RuntimeError, match="too small"):
        crop_like(x, 6, (5, 5))
    with pytest.raises(RuntimeError, match="too small"):
        crop_like(x, 0, (4, 11))


# --- feature sizes at 500x500 (docs/reference.md §2: pool5 22, fc6 16, upscore 544) ----------------------
def test_feature_sizes_at_500():
    net = FCN(21, "32s", W).eval()
    sizes = {}

    def hook(name):
        def f(_m, _inp, out):
            sizes[name] = tuple(out.shape[-2:])
        return f

    net.trunk.pool5.register_forward_hook(hook("pool5"))
    net.trunk.fc6.register_forward_hook(hook("fc6"))
    net.upscore.register_forward_hook(hook("upscore"))
    with torch.no_grad():
        y = net(torch.zeros(1, 3, 500, 500))
    assert sizes == {"pool5": (22, 22), "fc6": (16, 16), "upscore": (544, 544)}
    assert y.shape == (1, 21, 500, 500)
    # 19 + 500 <= 544: the crop fits with room to spare
    assert net.offsets["score"] + 500 <= sizes["upscore"][0]
