"""The identity-like FCN probe shared by the crop-alignment tests (test_fcn, test_geometry).

Every layer passes channel 0 through, max pools become average pools and the scorers copy
channel 0 into class 0, so the network maps a bright square back onto itself exactly when its
crop offsets are right: the centroid of class 0 must equal the square's.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlab.models import FCN

H_IMG, W_IMG, SIDE = 150, 190, 24


def make_identity_like(net: FCN, skip_gain: dict[str, float] | None = None) -> FCN:
    """Trunk convs pass channel 0 through unchanged (centre tap 1), max pools become average pools
    (a 2x2 average keeps a symmetric blob's centroid), scorers copy channel 0 into class 0."""
    skip_gain = skip_gain or {}
    before = dict(net.offsets)
    with torch.no_grad():
        for name in net.trunk.order:
            m = getattr(net.trunk, name)
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
                k = m.kernel_size[0]
                m.weight[0, 0, k // 2, k // 2] = 1.0  # fc6: [3, 3]
            elif isinstance(m, nn.MaxPool2d):
                setattr(net.trunk, name, nn.AvgPool2d(m.kernel_size, m.stride, m.padding,
                                                      ceil_mode=m.ceil_mode))
        for scorer in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(net, scorer):
                conv = getattr(net, scorer)
                conv.weight.zero_()
                conv.bias.zero_()
                conv.weight[0, 0, 0, 0] = skip_gain.get(scorer, 1.0)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    net.offsets = net._derive_offsets()
    assert net.offsets == before  # CoordMap treats max and average pools alike
    return net.eval()


def centroid(m: torch.Tensor) -> tuple[float, float]:
    m = m.double()
    assert m.sum() > 0
    ys = torch.arange(m.shape[0], dtype=torch.float64)
    xs = torch.arange(m.shape[1], dtype=torch.float64)
    return float((m.sum(1) * ys).sum() / m.sum()), float((m.sum(0) * xs).sum() / m.sum())


def square_image(cy: float, cx: float) -> torch.Tensor:
    x = torch.zeros(1, 3, H_IMG, W_IMG)
    y0, x0 = int(cy - (SIDE - 1) / 2), int(cx - (SIDE - 1) / 2)
    x[0, :, y0 : y0 + SIDE, x0 : x0 + SIDE] = 1.0
    assert centroid(x[0, 0]) == (cy, cx)
    return x


def class0_centroid(net, x):
    with torch.no_grad():
        y = net(x)
    assert y.shape[-2:] == x.shape[-2:]
    assert y.min() >= -1e-6
    return centroid(y[0, 0])


ALIGN_CASES = {
    "32s": (dict(variant="32s"), {}),
    "16s": (dict(variant="16s"), {}),
    "8s": (dict(variant="8s"), {}),
    # at-once scales pool4 by 0.01 and pool3 by 1e-4; undo it in the scorers so that every path
    # carries the same mass and a misaligned skip moves the centroid visibly
    "8s-atonce": (dict(variant="8s", at_once=True), {"score_pool4": 100.0, "score_pool3": 1e4}),
}
