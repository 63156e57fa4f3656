"""DeepLab-LargeFOV: output size, stride-8 geometry, pool rounding, train_on, the full-width
parameter count (docs/reference.md §2) and an end-to-end train() run.

Forward passes run at width 1/16 only; full-width networks are built on the meta device.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.models.deeplab import DeepLabLargeFOV

W = 1 / 16
K = 21


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return DeepLabLargeFOV(K, width=W).eval()


def stride8_size(net: nn.Module, hw) -> tuple[int, int]:
    """Spatial size of the fc8 output, read by a forward hook."""
    seen = {}
    handle = net.fc8.register_forward_hook(lambda m, i, o: seen.update(hw=tuple(o.shape[-2:])))
    try:
        with torch.no_grad():
            net(torch.randn(1, 3, *hw))
    finally:
        handle.remove()
    return seen["hw"]


# --- output size ----------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(37, 53), (97, 131), (360, 480)])
def test_output_size_equals_input_size(small_net, hw):
    with torch.no_grad():
        y = small_net(torch.randn(1, 3, *hw))
    assert y.shape == (1, K, *hw)


def test_stride8_map_caffe_rounding(small_net):
    # Caffe (ceil) rounding of the padded 3x3 stride-2 pools: ceil((H - 1) / 2) + 1 per pool.
    assert stride8_size(small_net, (360, 480)) == (46, 61)
    assert stride8_size(small_net, (321, 321)) == (41, 41)  # the paper's 41x41 for 321 crops


def test_stride8_map_floor_rounding():
    net = DeepLabLargeFOV(K, width=W, pool_ceil_mode=False).eval()
    assert stride8_size(net, (360, 480)) == (45, 60)  # docs/reference.md §2: 45x60 at 360x480
    assert stride8_size(net, (321, 321)) == (41, 41)  # 8n + 1: both roundings agree


# --- geometry -------------------------------------------------------------------------------------
def test_geometry():
    with torch.device("meta"):
        net = DeepLabLargeFOV(K)
    t = net.trunk
    for b in (1, 2, 3):
        p = getattr(t, f"pool{b}")
        assert (p.kernel_size, p.stride, p.padding) == (3, 2, 1)
    for b in (4, 5):
        p = getattr(t, f"pool{b}")
        assert (p.kernel_size, p.stride, p.padding) == (3, 1, 1)
    for i in (1, 2, 3):
        c = getattr(t, f"conv5_{i}")
        assert c.dilation == (2, 2) and c.padding == (2, 2)
        assert getattr(t, f"conv4_{i}").dilation == (1, 1)
    assert t.conv1_1.padding == (1, 1)
    assert t.fc6.kernel_size == (3, 3) and t.fc6.dilation == (12, 12) and t.fc6.padding == (12, 12)
    assert t.fc6.out_channels == 1024 and t.fc7.out_channels == 1024 and t.fc7.kernel_size == (1, 1)
    assert t.drop6.p == 0.5 and t.drop7.p == 0.5
    assert net.fc8.kernel_size == (1, 1) and net.fc8.out_channels == K
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_fc8_init():
    torch.manual_seed(0)
    net = DeepLabLargeFOV(K, width=0.5)  # 512 x 21 weights: enough to estimate the std
    assert torch.count_nonzero(net.fc8.bias) == 0
    assert abs(net.fc8.weight.std().item() - 0.01) < 0.001


def test_batch_norm_switch():
    net = DeepLabLargeFOV(K, width=W, batch_norm=True)
    assert isinstance(net.trunk.conv1_1_bn, nn.BatchNorm2d)
    assert isinstance(net.trunk.fc6_bn, nn.BatchNorm2d)


# --- parameter count ------------------------------------------------------------------------------
def expected_largefov_params(k: int) -> int:
    """Independent count from the layer plan in docs/reference.md §2 (every conv has a bias)."""
    total, cin = 0, 3
    for c in [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]:
        total += cin * c * 9 + c
        cin = c
    total += 512 * 1024 * 9 + 1024  # fc6 3x3
    total += 1024 * 1024 + 1024  # fc7 1x1
    return total + 1024 * k + k  # fc8


def test_full_width_parameter_count_matches_reference():
    with torch.device("meta"):
        net = DeepLabLargeFOV(K)
    n = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert n == expected_largefov_params(K) == 20_505_429
    assert f"{n / 1e6:.1f}" == "20.5"  # docs/reference.md §2: ~20.5M


# --- train_on -------------------------------------------------------------------------------------
def test_train_on_subsampled_labels_returns_stride8_logits_in_training():
    torch.manual_seed(0)
    net = DeepLabLargeFOV(K, width=W, train_on="subsampled_labels")
    x = torch.randn(1, 3, 97, 131)
    assert net.train()(x).shape == (1, K, 13, 18)  # 97 -> 49 -> 25 -> 13; 131 -> 66 -> 34 -> 18
    with torch.no_grad():
        assert net.eval()(x).shape == (1, K, 97, 131)


def test_train_on_upsampled_returns_input_size_in_training():
    net = DeepLabLargeFOV(K, width=W).train()
    assert net(torch.randn(1, 3, 37, 53)).shape == (1, K, 37, 53)


def test_upsampling_is_bilinear_with_the_named_align_corners():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 41, 57)
    for align in (False, True):
        net = DeepLabLargeFOV(K, width=W, upsample_align_corners=align).eval()
        seen = {}
        net.fc8.register_forward_hook(lambda m, i, o: seen.update(logits=o))
        with torch.no_grad():
            y = net(x)
        ref = torch.nn.functional.interpolate(seen["logits"], size=(41, 57), mode="bilinear",
                                              align_corners=align)
        torch.testing.assert_close(y, ref)


def test_bad_values_raise_config_error():
    with pytest.raises(ConfigError, match="train_on"):
        DeepLabLargeFOV(K, width=W, train_on="labels")
    with pytest.raises(ConfigError, match="fc_channels"):
        DeepLabLargeFOV(K, width=W, fc_channels=-1)
    with pytest.raises(ConfigError, match="num_classes"):
        DeepLabLargeFOV(True, width=W)


# --- end to end -----------------------------------------------------------------------------------
def test_train_runs(tmp_path, data_dir):
    from fcnlab.tasks.train import train

    cfg = compose_cfg("train", ["model=deeplab_largefov"], tmp_path, data_dir=data_dir)
    record = train(cfg)
    assert record["status"] == "finished" and record["model"] == "deeplab_largefov"


def test_pool5a_averages_pool5_before_fc6():
    """The released prototxt's pool5a (docs/reference.md §2): fc6 sees the 3x3 stride-1 average
    of pool5, padding counted in the window as Caffe's AVE pooling does; no parameters."""
    torch.manual_seed(0)
    net = DeepLabLargeFOV(5, width=0.0625).eval()
    without = DeepLabLargeFOV(5, width=0.0625, pool5a=False).eval()
    without.load_state_dict(net.state_dict())  # same parameters: pool5a has none
    assert [n for n in net.trunk.order if n.startswith("pool5")] == ["pool5", "pool5a"]
    x = torch.randn(1, 3, 41, 41)
    pool5 = net.trunk(x)["pool5"]
    padded = torch.nn.functional.pad(pool5, (1, 1, 1, 1))
    by_hand = sum(padded[..., i:i + pool5.shape[-2], j:j + pool5.shape[-1]]
                  for i in range(3) for j in range(3)) / 9
    fc6_in = {}
    net.trunk.fc6.register_forward_hook(lambda m, args, out: fc6_in.update(x=args[0]))
    net(x)
    torch.testing.assert_close(fc6_in["x"], by_hand)
    assert not torch.allclose(net(x), without(x))  # the pool changes the output
