"""FCN ``geometry: aligned`` (a deviation from the paper, see fcnlab.models.fcn): output size,
crop alignment, same parameters as ``caffe``, far fewer FLOPs on small images, the fc6 kernel crop
and the config switch.
"""

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcnlab.config import instantiate
from fcnlab.errors import ConfigError
from fcnlab.models import FCN
from fcnlab.models.fcn import MapCroppedConv2d

from conftest import compose_cfg
from fcn_probes import (ALIGN_CASES, class0_centroid, make_identity_like, square_image)

K = 21
VARIANTS = {
    "32s": dict(variant="32s"),
    "16s": dict(variant="16s"),
    "8s": dict(variant="8s"),
    "8s-atonce": dict(variant="8s", at_once=True),
}


@pytest.fixture(scope="module")
def small_nets():
    torch.manual_seed(0)
    return {name: FCN(K, width=1 / 16, geometry="aligned", **kw).eval()
            for name, kw in VARIANTS.items()}


# --- output size --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("hw", [(37, 53), (97, 131), (500, 375), (1, 1), (33, 17)])
def test_aligned_output_size_equals_input_size(small_nets, name, hw):
    with torch.no_grad():
        y = small_nets[name](torch.randn(1, 3, *hw))
    assert y.shape == (1, K, *hw)


def test_offsets_derived_per_geometry():
    """Caffe keeps the paper's numbers; aligned crops the upsampled map by 1 onto each skip."""
    assert FCN(K, "8s", 1 / 16).offsets == {"score_pool4": 5, "score_pool3": 9, "score": 31}
    assert FCN(K, "32s", 1 / 16, geometry="aligned").offsets == {"score": 16}
    assert FCN(K, "16s", 1 / 16, geometry="aligned").offsets == {
        "upscore2": 1, "score_pool4": 0, "score": 8}
    assert FCN(K, "8s", 1 / 16, geometry="aligned").offsets == {
        "upscore2": 1, "score_pool4": 0, "upscore_pool4": 1, "score_pool3": 0, "score": 4}


# --- crop alignment: the identity-like construction of test_fcn.py --------------------------------
# conv1_1 pads by 1 here, so image x stays at x before pool1; 2x2/2 average pools keep a symmetric
# blob symmetric when its centre is 15.5 (mod 16) (test_fcn.py uses 12.5 for the 99 px shift).
CENTRES = [(79.5, 95.5), (47.5, 143.5)]


@pytest.fixture(scope="module")
def identity_nets():
    return {name: make_identity_like(FCN(3, width=1 / 64, geometry="aligned", **kw), gain)
            for name, (kw, gain) in ALIGN_CASES.items()}


@pytest.mark.parametrize("name", list(ALIGN_CASES))
def test_aligned_crop_keeps_centroid(identity_nets, name):
    net = identity_nets[name]
    for cy, cx in CENTRES:
        gy, gx = class0_centroid(net, square_image(cy, cx))
        assert abs(gy - cy) < 0.75 and abs(gx - cx) < 0.75, (name, (cy, cx), (gy, gx))


@pytest.mark.parametrize("name", list(ALIGN_CASES))
def test_aligned_skip_paths_each_align(identity_nets, name):
    """Each path alone (the others' scorers at zero) lands on the square: a skip crop that was off
    by one cell would move its path by 8 or 16 px, which the summed test could average away."""
    net = identity_nets[name]
    scorers = [s for s in ("score_fr", "score_pool4", "score_pool3") if hasattr(net, s)]
    saved = {s: getattr(net, s).weight.detach().clone() for s in scorers}
    cy, cx = CENTRES[0]
    try:
        for keep in scorers:
            with torch.no_grad():
                for s in scorers:
                    getattr(net, s).weight.copy_(saved[s] if s == keep else 0 * saved[s])
            gy, gx = class0_centroid(net, square_image(cy, cx))
            assert abs(gy - cy) < 0.75 and abs(gx - cx) < 0.75, (name, keep, (gy, gx))
    finally:
        with torch.no_grad():
            for s in scorers:
                getattr(net, s).weight.copy_(saved[s])


@pytest.mark.parametrize("name", list(ALIGN_CASES))
def test_aligned_wrong_final_offset_is_detected(identity_nets, name):
    net = identity_nets[name]
    cy, cx = CENTRES[0]
    good = dict(net.offsets)
    try:
        net.offsets["score"] += 4
        gy, gx = class0_centroid(net, square_image(cy, cx))
        assert gy - cy < -3 and gx - cx < -3, (name, (gy, gx))
    finally:
        net.offsets = good


# --- same parameters, far fewer FLOPs -----------------------------------------------------------------
def counts(net):
    learn = sum(p.numel() for p in net.parameters() if p.requires_grad)
    fixed = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return learn, fixed


@pytest.mark.parametrize("kw", [dict(variant="32s"), dict(variant="16s"), dict(variant="8s"),
                                dict(variant="8s", batch_norm=True, upsample_learn="all"),
                                dict(variant="32s", freeze_trunk=True)])
def test_aligned_has_the_caffe_parameters(kw):
    with torch.device("meta"):
        caffe, aligned = FCN(K, width=1.0, **kw), FCN(K, width=1.0, geometry="aligned", **kw)
    assert counts(aligned) == counts(caffe)
    shapes = lambda net: {k: tuple(v.shape) for k, v in net.state_dict().items()}  # noqa: E731
    assert shapes(aligned) == shapes(caffe)


def test_weights_move_between_geometries():
    torch.manual_seed(3)
    caffe = FCN(K, "8s", 1 / 16)
    aligned = FCN(K, "8s", 1 / 16, geometry="aligned")
    aligned.load_state_dict(caffe.state_dict())
    assert torch.equal(aligned.trunk.fc6.weight, caffe.trunk.fc6.weight)
    assert isinstance(aligned.trunk.fc6, MapCroppedConv2d)
    assert aligned.trunk.fc6.weight is dict(aligned.named_parameters())["trunk.fc6.weight"]


def train_flops(net: nn.Module, hw: tuple[int, int]) -> int:
    x = torch.randn(1, 3, *hw)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops()


def test_aligned_costs_far_fewer_flops_at_embedded_scale():
    torch.manual_seed(0)
    caffe = train_flops(FCN(11, "8s", 1 / 8), (96, 128))
    aligned = train_flops(FCN(11, "8s", 1 / 8, geometry="aligned"), (96, 128))
    assert aligned < caffe / 3, (aligned, caffe)  # measured: 0.49 vs 3.16 GFLOP fwd+bwd


# --- fc6's kernel crop on small maps ------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(1, 1), (1, 6), (2, 3), (3, 3), (4, 2), (5, 9)])
def test_map_cropped_conv_equals_the_full_conv(hw):
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 6, 7, padding=3).double()
    cropped = MapCroppedConv2d.sharing(conv)
    x = torch.randn(2, 5, *hw, dtype=torch.float64, requires_grad=True)
    full, crop = conv(x), cropped(x)
    torch.testing.assert_close(crop, full, rtol=1e-12, atol=1e-12)
    g_full = torch.autograd.grad(full.square().sum(), [x, conv.weight, conv.bias])
    g_crop = torch.autograd.grad(crop.square().sum(), [x, cropped.weight, cropped.bias])
    for a, b in zip(g_crop, g_full):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_map_cropped_conv_refuses_other_geometry():
    with pytest.raises(ValueError, match="same-padded"):
        MapCroppedConv2d.sharing(nn.Conv2d(3, 3, 7, padding=0))


# --- the switch ---------------------------------------------------------------------------------------
def test_bad_geometry_value():
    with pytest.raises(ConfigError) as e:
        FCN(K, "8s", 1 / 16, geometry="valid")
    msg = str(e.value)
    assert "geometry" in msg and "'valid'" in msg and "aligned" in msg and "\n" not in msg


@pytest.mark.parametrize("model", ["fcn8s", "fcn32s_fixed", "fcn_bilinear"])
def test_config_switch(tmp_path, model):
    cfg = compose_cfg("train", [f"model={model}", "model.net.geometry=aligned"], tmp_path)
    GlobalHydra.instance().clear()
    net = instantiate(cfg.model.net)
    assert net.geometry == "aligned" and net.trunk.conv1_1.padding == (1, 1)
    # The paper's network by default; the embedded scale switches the deviation on.
    default = compose_cfg("train", [f"model={model}", "scale=paper"], tmp_path)
    GlobalHydra.instance().clear()
    assert default.model.net.geometry == "caffe"
    assert instantiate(default.model.net).trunk.conv1_1.padding == (100, 100)
    embedded = compose_cfg("train", [f"model={model}"], tmp_path)
    GlobalHydra.instance().clear()
    assert embedded.model.net.geometry == embedded.deviations.fcn_geometry == "aligned"
