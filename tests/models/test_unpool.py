"""The upsampling parts (docs/reference.md §2): shapes incl. odd pre-pool sizes, max unpooling at
the argmax positions, bed of nails, nearest, bilinear-initialised transposed conv alignment, config
errors.
"""

import pytest
import torch
import torch.nn.functional as F

from fcnlab.errors import ConfigError
from fcnlab.models.unpool import (
    UNPOOL_KINDS,
    BedOfNailsUnpool,
    BilinearResize,
    MaxUnpool,
    NearestUnpool,
    TransposedConvUpsample,
    make_unpool,
)

C = 3


def _pooled(hw=(45, 60), seed=0):
    """A random pre-pool map, its Caffe-style (ceil_mode) 2×2 max pool and the argmax indices."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, C, *hw, generator=g)
    y, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
    return x, y, idx


@pytest.mark.parametrize("kind", list(UNPOOL_KINDS))
@pytest.mark.parametrize("hw", [(45, 60), (46, 61), (8, 8), (7, 5)])
def test_output_size(kind, hw):
    x, y, idx = _pooled(hw)
    part = make_unpool(kind, C)
    with torch.no_grad():
        out = part(y, idx, x.shape)  # full shape accepted; the last two entries are used
        assert out.shape == x.shape
        out = part(y, idx, tuple(hw))
        assert out.shape == x.shape
        if kind != "max":  # default: scale × input
            assert part(y).shape[-2:] == (2 * y.shape[-2], 2 * y.shape[-1])


def test_odd_pre_pool_size_360x480():
    # 360x480 -> 180x240 -> 90x120 -> 45x60 -> 23x30: the 23x30 map must unpool to 45x60.
    y = torch.randn(1, C, 23, 30)
    for kind in UNPOOL_KINDS:
        if kind == "max":
            continue
        assert make_unpool(kind, C)(y, None, (45, 60)).shape == (1, C, 45, 60)


def test_max_unpool_places_maxima_at_argmax():
    x, y, idx = _pooled((45, 61))
    out = MaxUnpool()(y, idx, x.shape[-2:])
    # Expected: the pre-pool map with everything but each window's maximum zeroed.
    expected = torch.zeros_like(x).flatten(2)
    expected.scatter_(2, idx.flatten(2), y.flatten(2))
    expected = expected.view_as(x)
    assert torch.equal(out, expected)
    nz = out != 0
    assert nz.sum() == y.numel()  # one nonzero per window (random data: no ties, no zeros)
    assert torch.equal(out[nz], x[nz])  # each sits where it was in the original map
    # ... and it is the maximum of its window
    assert torch.equal(F.max_pool2d(out.masked_fill(~nz, float("-inf")), 2, 2, ceil_mode=True), y)


def test_max_unpool_needs_indices():
    with pytest.raises(ValueError, match="indices"):
        MaxUnpool()(torch.randn(1, 1, 2, 2))


def test_bed_of_nails_top_left():
    y = torch.arange(1.0, 7.0).view(1, 1, 2, 3)
    out = BedOfNailsUnpool()(y)
    assert out.shape == (1, 1, 4, 6)
    assert torch.equal(out[..., ::2, ::2], y)
    mask = torch.zeros_like(out, dtype=torch.bool)
    mask[..., ::2, ::2] = True
    assert torch.all(out[~mask] == 0)
    odd = BedOfNailsUnpool()(y, output_size=(3, 5))
    assert torch.equal(odd, out[..., :3, :5])


def test_nearest_equals_repeat_interleave():
    y = torch.randn(2, C, 5, 7)
    expected = y.repeat_interleave(2, -2).repeat_interleave(2, -1)
    assert torch.equal(NearestUnpool()(y), expected)
    assert torch.equal(NearestUnpool()(y, output_size=(9, 13)), expected[..., :9, :13])
    # a larger size is padded at the bottom/right by repetition
    assert torch.equal(NearestUnpool()(y, output_size=(11, 14))[..., 10, :], expected[..., 9, :])


def test_transposed_conv_is_bilinear_on_the_diagonal():
    part = TransposedConvUpsample(C)
    assert part.offset == 1  # derived by CoordMap: pooled pixel i (centre 2i+0.5) lands at 2i+1.5
    w = part.up.weight
    assert part.up.bias is None and w.requires_grad
    off_diag = ~torch.eye(C, dtype=torch.bool)
    assert torch.all(w[off_diag] == 0)
    assert not TransposedConvUpsample(C, learnable=False).up.weight.requires_grad


def test_transposed_conv_constant_stays_constant_in_interior():
    y = torch.full((1, C, 6, 8), 3.0)
    with torch.no_grad():
        out = TransposedConvUpsample(C)(y, output_size=(11, 15))
    assert out.shape == (1, C, 11, 15)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.full_like(out[..., 1:-1, 1:-1], 3.0))


@pytest.mark.parametrize("scale", [2, 4])
def test_transposed_conv_aligned_with_bilinear_resize(scale):
    # A ramp stays a ramp at the same positions as F.interpolate (align_corners=False).
    h, w = 6, 9
    ramp = (torch.arange(h)[:, None] * 2.0 + torch.arange(w)[None, :] * 0.5).expand(1, C, h, w)
    with torch.no_grad():
        out = TransposedConvUpsample(C, scale=scale)(ramp)
    ref = F.interpolate(ramp, scale_factor=scale, mode="bilinear", align_corners=False)
    assert out.shape == ref.shape == (1, C, h * scale, w * scale)
    m = scale  # border where the transposed conv has no neighbour beyond the edge
    torch.testing.assert_close(out[..., m:-m, m:-m], ref[..., m:-m, m:-m])
    # odd target size: same grid, cut at the bottom/right
    with torch.no_grad():
        odd = TransposedConvUpsample(C, scale=scale)(ramp,
                                                     output_size=(h * scale - 1, w * scale - 1))
    torch.testing.assert_close(odd, out[..., :-1, :-1])


def test_bilinear_resize():
    y = torch.randn(1, C, 23, 30)
    out = BilinearResize()(y, output_size=(45, 60))
    assert out.shape == (1, C, 45, 60)
    torch.testing.assert_close(
        out, F.interpolate(y, size=(45, 60), mode="bilinear", align_corners=False))
    assert BilinearResize()(y).shape == (1, C, 46, 60)
    assert list(BilinearResize().parameters()) == []


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        make_unpool("bicubic", C)
    msg = str(err.value)
    assert "'bicubic'" in msg and "\n" not in msg
    for kind in UNPOOL_KINDS:
        assert kind in msg
    with pytest.raises(ConfigError):
        make_unpool(["max"], C)
