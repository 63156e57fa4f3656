"""SegNet (docs/reference.md §2): output size for odd sizes, every unpool kind, parameter count, logits
without BN/ReLU, config errors, and `train.py model=segnet debug=fast` end to end.
"""

import json
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.models.segnet import SegNet
from fcnlab.models.unpool import UNPOOL_KINDS
from fcnlab.tasks.train import train

W = 1 / 16
K = 11


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- output size ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return SegNet(K, width=W).eval()


@pytest.mark.parametrize("hw", [(360, 480), (37, 53), (32, 32)])
def test_output_size_equals_input_size(small_net, hw):
    # 360x480 pools to 23x30 and 12x15: max unpooling must be told the pre-pool sizes.
    with torch.no_grad():
        y = small_net(torch.randn(1, 3, *hw))
    assert y.shape == (1, K, *hw)


@pytest.mark.parametrize("kind", list(UNPOOL_KINDS))
def test_every_unpool_kind(kind):
    net = SegNet(K, width=W, unpool=kind).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 45, 61))
    assert y.shape == (1, K, 45, 61)
    assert torch.isfinite(y).all()


def test_dropout_switch():
    assert not any(isinstance(m, nn.Dropout) for m in SegNet(K, width=W).modules())
    net = SegNet(K, width=W, dropout=0.5)
    names = sorted(n for n, m in net.named_modules() if isinstance(m, nn.Dropout))
    assert names == ["decdrop3", "decdrop4", "decdrop5", "encdrop3", "encdrop4", "encdrop5"]
    net.train()
    assert net(torch.randn(2, 3, 37, 53)).shape == (2, K, 37, 53)


# --- parameters -----------------------------------------------------------------------------------
def _expected_params(k: int) -> tuple[int, int]:
    """Count from the layer plan: 3x3 convs with bias, BN scale + shift (running stats are
    buffers, not parameters)."""
    conv = lambda i, o: 9 * i * o + o  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    enc_plan = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    dec_plan = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
                (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]
    encoder = sum(conv(i, o) + bn(o) for i, o in enc_plan)
    decoder = sum(conv(i, o) + bn(o) for i, o in dec_plan) + conv(64, k)  # conv1_1_D: no BN
    return encoder, encoder + decoder


def test_full_width_parameter_count():
    with torch.device("meta"):
        net = SegNet(K)
    encoder, total = _expected_params(K)
    assert _count(net.trunk) == encoder == 14_723_136  # "encoder 14.7M"
    assert _count(net) == total == 29_449_355  # "~29.45M (K=11)"
    assert f"{_count(net) / 1e6:.2f}" == "29.45"


# --- layers ---------------------------------------------------------------------------------------
def test_layer_names_and_logits_without_bn_relu(small_net):
    names = dict(small_net.named_modules())
    for n in ("conv5_3_D", "conv5_3_D_bn", "conv4_1_D", "conv1_2_D_bn", "conv1_1_D", "upsample1",
              "trunk.conv1_1", "trunk.conv1_1_bn"):
        assert n in names, n
    assert "conv1_1_D_bn" not in names
    last = small_net.conv1_1_D
    assert isinstance(last, nn.Conv2d) and last.out_channels == K and last.kernel_size == (3, 3)
    assert small_net.conv4_1_D.out_channels == 256 * W
    with torch.no_grad():
        y = small_net(torch.randn(1, 3, 37, 53))
    assert (y < 0).any()  # no ReLU on the logits


def test_bn_init():
    net = SegNet(K, width=W)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_no_batch_norm():
    net = SegNet(K, width=W, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("kw", [dict(unpool="bicubic"), dict(dropout=1.0), dict(num_classes=1),
                                dict(width=2.0)])
def test_config_errors(kw):
    args = dict(num_classes=K, width=W) | kw
    with pytest.raises(ConfigError) as err:
        SegNet(**args)
    if "unpool" in kw:
        assert "'bicubic'" in str(err.value) and "bed_of_nails" in str(err.value)


# --- end to end -----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides",
                         [["model=segnet"], ["model=segnet", "model.net.unpool=nearest"]])
def test_train_debug_fast(tmp_path, data_dir, overrides):
    cfg = compose_cfg("train", overrides + ["trainer.max_steps=2"], tmp_path,
                      data_dir=data_dir)
    try:
        assert cfg.model.net.width == 1 / 16  # debug=fast
        record = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    on_disk = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert on_disk["status"] == record["status"] == "finished"
    assert on_disk["model"] == "segnet"
    assert any(e["split"] == "val" for e in on_disk["evaluations"])
