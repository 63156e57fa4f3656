"""BN folding (fcnlab.models.fold): the plain vgg16 file computes what the BN classifier computes
in eval mode, and the FCN trunk loads it as any plain VGG16 classifier."""

from __future__ import annotations

import pytest
import torch

from fcnlab.models.fcn import FCN
from fcnlab.models.fold import centre_fc6, folded_state_dict
from fcnlab.models.vgg import VGG16Classifier
from fcnlab.models.weights import convolutionalize


def _bn_classifier() -> VGG16Classifier:
    torch.manual_seed(0)
    net = VGG16Classifier(0.0625, num_classes=5, batch_norm=True, dropout=0.0)
    for m in net.modules():  # statistics and affine terms far from the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.3, 2.0)
            m.bias.data.normal_()
    return net.eval()


def test_folded_plain_classifier_equals_the_bn_classifier_in_eval_mode():
    bn = _bn_classifier()
    plain = VGG16Classifier(0.0625, num_classes=5, batch_norm=False, dropout=0.0).eval()
    plain.load_state_dict(folded_state_dict(bn.features, bn.classifier))  # strict: every key
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        want, got = bn(x), plain(x)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_folding_changes_the_weights_and_the_fcn_trunk_loads_them():
    bn = _bn_classifier()
    state = folded_state_dict(bn.features, bn.classifier)
    assert not torch.equal(state["features.0.weight"], bn.features[0].weight)
    assert not any("running" in k for k in state)
    net = FCN(num_classes=5, variant="32s", width=0.0625)
    report = convolutionalize(state, net.trunk)
    assert len(report["copied"]) == 30
    assert torch.equal(net.trunk.conv5_3.bias, state["features.28.bias"])


def test_a_plain_classifier_is_refused():
    plain = VGG16Classifier(0.0625, num_classes=5, batch_norm=False)
    with pytest.raises(TypeError, match="BatchNorm2d"):
        folded_state_dict(plain.features, plain.classifier)


def test_centre_fc6_keeps_the_classifier_on_one_cell_crops_and_only_there():
    """32-px crops: pool5 is one cell copied 49 times, so only each fc6 filter's tap sum acts;
    on that sum moved to the centre tap the classifier's outputs are unchanged. At 64 px (pool5
    2x2) the taps read different cells, and the move changes the outputs."""
    torch.manual_seed(0)
    net = VGG16Classifier(0.0625, num_classes=5, dropout=0.0).eval()
    state = centre_fc6(net.state_dict())
    w = state["classifier.0.weight"].reshape(-1, 32, 7, 7)
    assert w[:, :, 3, 3].abs().sum() > 0
    w_centre_zeroed = w.clone()
    w_centre_zeroed[:, :, 3, 3] = 0
    assert not w_centre_zeroed.any()
    moved = VGG16Classifier(0.0625, num_classes=5, dropout=0.0).eval()
    moved.load_state_dict(state)
    x32, x64 = torch.randn(4, 3, 32, 32), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(moved(x32), net(x32), rtol=1e-4, atol=1e-6)
        assert (moved(x64) - net(x64)).abs().max() > 1e-3


def test_a_centred_fc1024_file_loads_into_deeplab_largefov_by_spatial_decimation():
    """The embedded recipe's fc 1024 file has DeepLab-LargeFOV's fc width already: its fc6 is
    decimated by tap only (every 3rd: the centre survives), not by filter."""
    from fcnlab.models.deeplab import DeepLabLargeFOV

    torch.manual_seed(0)
    state = centre_fc6(VGG16Classifier(0.0625, num_classes=5, fc_channels=1024).state_dict())
    net = DeepLabLargeFOV(3, 0.0625)  # fc 1024 * 1/16 = 64, as the file's
    convolutionalize(state, net.trunk)
    fc6 = state["classifier.0.weight"].reshape(64, 32, 7, 7)
    assert torch.equal(net.trunk.fc6.weight, fc6[:, :, ::3, ::3])
    assert torch.equal(net.trunk.fc6.weight[:, :, 1, 1], fc6[:, :, 3, 3])
