"""DeconvNet: output size, the minimum-input-size error, the layer plan and its full-width parameter
count (docs/reference.md §2), unpool kinds, and an end-to-end train() run.

Forward passes run at width 1/16 only; full-width networks are built on the meta device.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.models.deconvnet import DeconvNet
from fcnlab.models.unpool import MaxUnpool

W = 1 / 16
K = 21


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return DeconvNet(K, width=W).eval()


# --- output size ----------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(224, 224), (250, 301)])
def test_output_size_equals_input_size(small_net, hw):
    with torch.no_grad():
        y = small_net(torch.randn(1, 3, *hw))
    assert y.shape == (1, K, *hw)


def test_min_input_size_is_derived_from_the_pools(small_net):
    # Five ceil-mode 2x2 pools: pool5 = ceil(H / 32) >= 7  <=>  H >= 193.
    assert small_net.min_input_size == 193
    assert small_net.pool5_size(193) == 7 and small_net.pool5_size(192) == 6
    assert small_net.pool5_size(224) == 7 and small_net.pool5_size(360) == 12


def test_too_small_input_raises_a_clear_error(small_net):
    with pytest.raises(ConfigError, match=r"at least 193×193.*got 37×53 \(pool5 2×2\)"):
        small_net(torch.randn(1, 3, 37, 53))
    with pytest.raises(ConfigError, match=r"got 192×400 \(pool5 6×13\)"):
        small_net.check_input_size((192, 400))
    small_net.check_input_size((193, 193))  # the minimum itself is fine


# --- layer plan and parameter count ---------------------------------------------------------------
def conv_params(cin, cout, k):
    return cin * cout * k * k + cout


def bn_params(c):
    return 2 * c


def expected_deconvnet_params(k: int, fc: int) -> int:
    """Independent count from the layer plan in docs/reference.md §2 (every conv/deconv has a bias,
    every one but seg_score is followed by BN with a scale and a shift)."""
    total, cin = 0, 3
    for c in [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]:  # VGG16 + BN
        total += conv_params(cin, c, 3) + bn_params(c)
        cin = c
    total += conv_params(512, fc, 7) + bn_params(fc)  # fc6
    total += conv_params(fc, fc, 1) + bn_params(fc)  # fc7
    total += conv_params(fc, 512, 7) + bn_params(512)  # fc6-deconv
    cin = 512
    for c in [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64, 64]:  # deconv5_1 … 1_2
        total += conv_params(cin, c, 3) + bn_params(c)
        cin = c
    return total + conv_params(64, k, 1)  # seg-score


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_full_width_parameter_count_matches_reference():
    with torch.device("meta"):
        net = DeconvNet(K)
    n = count(net)
    assert n == expected_deconvnet_params(K, 4096) == 251_805_653
    assert f"{n / 1e6:.1f}" == "251.8"  # docs/reference.md §2: ~251.8M (4 significant digits)


def test_fc_channels_1024_gives_the_segnet_benchmark_size():
    with torch.device("meta"):
        net = DeconvNet(11, fc_channels=1024)
    assert count(net) == expected_deconvnet_params(11, 1024)
    assert round(count(net) / 1e6) == 82  # the SegNet benchmark's text: ~82M at K=11


def test_layer_plan():
    with torch.device("meta"):
        net = DeconvNet(K)
    t = net.trunk
    assert t.fc6.kernel_size == (7, 7) and t.fc6.padding == (0, 0) and t.fc6.out_channels == 4096
    assert t.fc7.kernel_size == (1, 1) and t.conv1_1.padding == (1, 1)
    assert isinstance(t.fc6_bn, nn.BatchNorm2d) and isinstance(t.conv5_3_bn, nn.BatchNorm2d)
    assert t.drop6.p == 0 and t.drop7.p == 0  # no dropout in DeconvNet
    assert isinstance(net.fc6_deconv, nn.ConvTranspose2d) and net.fc6_deconv.kernel_size == (7, 7)
    assert (net.fc6_deconv.in_channels, net.fc6_deconv.out_channels) == (4096, 512)
    plan = {n: getattr(net, n).out_channels for n in net.decoder_layer_names()}
    assert plan == {
        "fc6_deconv": 512, "deconv5_1": 512, "deconv5_2": 512, "deconv5_3": 512,
        "deconv4_1": 512, "deconv4_2": 512, "deconv4_3": 256,
        "deconv3_1": 256, "deconv3_2": 256, "deconv3_3": 128,
        "deconv2_1": 128, "deconv2_2": 64, "deconv1_1": 64, "deconv1_2": 64, "seg_score": K,
    }
    for name in plan:
        if name.startswith("deconv"):
            m = getattr(net, name)
            assert (m.kernel_size, m.stride, m.padding) == ((3, 3), (1, 1), (1, 1))
            assert isinstance(getattr(net, f"{name}_bn"), nn.BatchNorm2d)
    assert all(isinstance(getattr(net, f"unpool{b}"), MaxUnpool) for b in range(1, 6))


def test_min_block1_channels_widens_only_the_layers_seg_score_reads():
    # A no-op at width 1 (deconv1_x are 64 wide there); at width 1/8 it widens deconv1_1/1_2
    # (and seg_score's input) from 8 to 16 and nothing else; the forward still runs.
    with torch.device("meta"):
        plain, bounded = DeconvNet(K), DeconvNet(K, min_block1_channels=64)
    assert count(plain) == count(bounded)
    torch.manual_seed(0)
    small = DeconvNet(K, width=1 / 8, fc_channels=256)
    wide = DeconvNet(K, width=1 / 8, fc_channels=256, min_block1_channels=16).eval()
    widths = {n: getattr(wide, n).out_channels for n in wide.decoder_layer_names()}
    assert widths == {n: (16 if n.startswith("deconv1_") else getattr(small, n).out_channels)
                      for n in small.decoder_layer_names()}
    assert wide.seg_score.in_channels == 16 and wide.deconv1_1.in_channels == 8
    with torch.no_grad():
        assert wide(torch.randn(1, 3, 200, 200)).shape == (1, K, 200, 200)


# --- unpool kinds ---------------------------------------------------------------------------------
def test_same_padded_fc6_runs_on_small_images_with_the_same_parameters():
    # The embedded 96x128 pictures: pool5 3x4, under the valid fc6's 7x7.
    valid = DeconvNet(11, 0.125, fc_channels=1024)
    padded = DeconvNet(11, 0.125, fc_channels=1024, fc6_padding=3)
    assert valid.min_input_size == 193 and padded.min_input_size < 96
    x = torch.randn(2, 3, 96, 128)
    assert padded(x).shape == (2, 11, 96, 128)
    with pytest.raises(ConfigError, match="at least 193"):
        valid(x)
    shapes = {k: v.shape for k, v in valid.state_dict().items()}
    assert {k: v.shape for k, v in padded.state_dict().items()} == shapes
    # Padding 3 on fc6 and on fc6_deconv: the fc6 map is pool5's, and so is the deconv's output.
    f = padded.trunk(x)
    assert f["fc7"].shape[-2:] == f["pool5"].shape[-2:] == (3, 4)
    assert padded.fc6_deconv(f["fc7"]).shape[-2:] == (3, 4)
    with pytest.raises(ConfigError, match="fc6_padding"):
        DeconvNet(11, 0.125, fc6_padding=1)


@pytest.mark.parametrize("kind", ["nearest", "deconv"])
def test_other_unpool_kinds_keep_the_size(kind):
    torch.manual_seed(0)
    net = DeconvNet(K, width=W, fc_channels=256, unpool=kind).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 200, 213)).shape == (1, K, 200, 213)
    if kind == "deconv":  # a learnable unpool part keeps its bilinear initialisation
        up = net.unpool3.up.weight
        assert torch.count_nonzero(up[0, 1]) == 0 and torch.count_nonzero(up[0, 0]) > 0


def test_bad_values_raise_config_error():
    with pytest.raises(ConfigError, match="unpool"):
        DeconvNet(K, width=W, unpool="bogus")
    with pytest.raises(ConfigError, match="fc_channels"):
        DeconvNet(K, width=W, fc_channels=0)
    with pytest.raises(ConfigError, match="num_classes"):
        DeconvNet(1, width=W)
    with pytest.raises(ConfigError, match="min_block1_channels"):
        DeconvNet(K, width=W, min_block1_channels=-1)


# --- end to end -----------------------------------------------------------------------------------
def test_train_runs(tmp_path, data_dir):
    from fcnlab.tasks.train import train

    cfg = compose_cfg("train", [
        "model=deconvnet", "data.datamodule.image_size=[200,200]", "data.datamodule.num_train=8",
        "data.datamodule.batch_size=2", "data.datamodule.eval_batch_size=2",
        "model.net.fc_channels=256", "trainer.max_steps=2",
        # fc 256 is not the embedded ImageNet's fc width: from He initialisation
        "model.pretrained=null",
    ], tmp_path, data_dir=data_dir)  # the folder name encodes the size: its own 200x200 data
    record = train(cfg)
    assert record["status"] == "finished" and record["model"] == "deconvnet"


def test_train_on_too_small_images_fails_with_the_clear_error(tmp_path, data_dir):
    from fcnlab.tasks.train import train

    # The paper's valid fc6 (the embedded scale pads it: deviations.deconvnet_fc6_padding).
    cfg = compose_cfg("train", ["model=deconvnet", "trainer.max_steps=1",
                                "model.net.fc6_padding=0"], tmp_path,
                      data_dir=data_dir)  # debug=fast: 40x56 images
    with pytest.raises(ConfigError, match=r"at least 193×193.*got 40×56"):
        train(cfg)
