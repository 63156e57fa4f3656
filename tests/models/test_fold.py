"""BN folding (fcnlab.models.fold): the plain vgg16 file computes what the BN classifier computes
in eval mode, and the FCN trunk loads it as any plain VGG16 classifier."""

from __future__ import annotations

import pytest
import torch

from fcnlab.models.fcn import FCN
from fcnlab.models.fold import folded_state_dict
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
