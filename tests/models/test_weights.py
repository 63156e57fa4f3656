"""'A fully connected layer is a convolution': VGG16 classifier weights -> the FCN trunk.

The classifier is built at width 1/8 for speed (one full-width layout check and one full-width
224×224 forward as well). The trunk is ``VGG16(width, conv1_padding=1, fc=True, dropout=0)``, i.e.
the classifier's geometry: with padding 1 every 3×3 conv keeps the size, so at 224×224 both nets
see pool5 = 7×7 (ceil- and floor-mode pools agree on 224 = 7·32).

The input convention a file expects is checked in tests/models/test_sidecar.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from fcnlab.errors import ConfigError
from fcnlab.models.layouts import conv_layout
from fcnlab.models.vgg import VGG16, VGG16Classifier
from fcnlab.models.weights import convolutionalize, load_vgg16_classifier

W = 0.125

# torchvision's vgg16 state dict, from its documented architecture (configuration D).
TORCHVISION_VGG16_SHAPES = {
    **{f"features.{i}.weight": s for i, s in zip(
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3),
         (256, 256, 3, 3), (256, 256, 3, 3), (512, 256, 3, 3)] + [(512, 512, 3, 3)] * 5)},
    **{f"features.{i}.bias": (c,) for i, c in zip(
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512))},
    "classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4) -> None:
    """Equal to float tolerance, relative to the size of the activations."""
    scale = float(expected.abs().max())
    assert scale > 0, "degenerate test: all activations are zero"
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def fc7_of(classifier: VGG16Classifier, x: torch.Tensor) -> torch.Tensor:
    """The classifier's fc7 activations (after the ReLU of classifier.3), via a forward hook."""
    seen = {}
    handle = classifier.classifier[4].register_forward_hook(
        lambda m, i, o: seen.__setitem__("fc7", o.detach().clone()))
    try:
        classifier(x)
    finally:
        handle.remove()
    return seen["fc7"]


def trunk_for(width: float, **kw) -> VGG16:
    return VGG16(width, conv1_padding=1, fc=True, dropout=0.0, **kw).eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    clf = VGG16Classifier(W).eval()
    trunk = trunk_for(W)
    convolutionalize(clf.state_dict(), trunk)
    return clf, trunk


def test_layout_matches_torchvision_at_full_width():
    with torch.device("meta"):  # shapes only, no memory, no init cost
        shapes = {k: tuple(v.shape) for k, v in VGG16Classifier(1.0).state_dict().items()}
    assert shapes == TORCHVISION_VGG16_SHAPES
    assert [ci for _, ci, _ in conv_layout()] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    # vgg16_bn: conv, BN, ReLU per conv -> convs at these indices, BNs one later.
    bn_convs = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    assert [ci for _, ci, _ in conv_layout(True)] == bn_convs
    with torch.device("meta"):
        bn = VGG16Classifier(1.0, batch_norm=True).state_dict()
    assert all(f"features.{bi}.running_var" in bn for _, _, bi in conv_layout(True))


def test_file_roundtrip_and_224_equivalence(tiny, tmp_path):
    clf, _ = tiny
    path = tmp_path / "vgg16.pth"
    torch.save(clf.state_dict(), path)
    state = load_vgg16_classifier(path)
    trunk = trunk_for(W)
    result = convolutionalize(state, trunk)
    assert "fc6.weight" in result["copied"] and "fc7.weight" in result["copied"]
    assert result["kept"] == []  # every trunk tensor comes from the classifier
    assert trunk.fc6.weight.shape == (512, 64, 7, 7) and trunk.fc7.weight.shape == (512, 512, 1, 1)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        fc7 = trunk(x)["fc7"]
        assert fc7.shape == (2, 512, 1, 1)
        close(fc7[:, :, 0, 0], fc7_of(clf, x))


def test_larger_input_slides_the_classifier_over_pool5(tiny):
    """At 320×320 fc6/fc7 become a 4×4 map; each position is the classifier's fc6→fc7 on the 7×7
    pool5 window there, i.e. the classifier applied at stride 32."""
    clf, trunk = tiny
    size = 320
    pooled = size
    for _ in range(5):
        pooled = math.ceil(pooled / 2)  # ceil-mode pools, as in Caffe: 160, 80, 40, 20, 10
    side = pooled - 7 + 1  # 7×7 fc6, no padding: 4
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        out = trunk(x)
        assert out["pool5"].shape[-2:] == (pooled, pooled)
        assert out["fc7"].shape[-2:] == (side, side) == (4, 4)
        head = clf.classifier[:5]  # fc6, ReLU, Dropout (eval), fc7, ReLU
        for i in range(side):
            for j in range(side):
                window = out["pool5"][:, :, i:i + 7, j:j + 7].flatten(1)  # channel-major
                close(out["fc7"][:, :, i, j], head(window))


def test_crops_agree_only_up_to_padding(tiny):
    """Dense evaluation = sliding the classifier, *up to zero padding*. At 320×320 the map
    position (i, j) covers the 224×224 crop at (32i, 32j) (the last stride-32-aligned crop is
    (96, 96) -> map[3, 3]), but the crop's own 3×3 convs pad its right/bottom (or every) border with
    zeros where the big image has content, and those border effects reach pool5 (receptive field
    212 px). So the crop's fc7 is close to, not equal to, the map entry; the exact statement is
    the pool5-window one in the test above. Sizes are multiples of 32, where floor-mode (the
    classifier's) and ceil-mode (the trunk's) pools agree."""
    clf, trunk = tiny
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        dense = trunk(x)["fc7"][0]
        for i, j in ((0, 0), (3, 3)):
            crop = fc7_of(clf, x[:, :, 32 * i:32 * i + 224, 32 * j:32 * j + 224])[0]
            cosine = torch.nn.functional.cosine_similarity(crop, dense[:, i, j], dim=0)
            assert cosine > 0.9
            assert (crop - dense[:, i, j]).abs().max() > 1e-3  # padding makes them differ
        for size in (256, 288):  # map side = H/32 - 6 at multiples of 32
            assert trunk(torch.randn(1, 3, size, size))["fc7"].shape[-1] == size // 32 - 6


def test_full_width_224_forward():
    torch.manual_seed(1)
    clf = VGG16Classifier(1.0).eval()
    trunk = trunk_for(1.0)
    convolutionalize(clf.state_dict(), trunk)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        close(trunk(x)["fc7"][:, :, 0, 0], fc7_of(clf, x))


def test_vgg16_bn_layout(tmp_path):
    torch.manual_seed(2)
    clf = VGG16Classifier(W, batch_norm=True)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for m in clf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    clf.eval()
    torch.save(clf.state_dict(), tmp_path / "bn.pth")
    trunk = trunk_for(W, batch_norm=True)
    result = convolutionalize(load_vgg16_classifier(tmp_path / "bn.pth"), trunk)
    assert "conv5_3_bn.running_var" in result["copied"]
    # vgg16_bn has no BN on its fc layers: the trunk's fc6_bn/fc7_bn keep their initialisation.
    assert {k.rsplit(".", 1)[0] for k in result["kept"]} == {"fc6_bn", "fc7_bn"}
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        close(trunk(x)["fc7"][:, :, 0, 0], fc7_of(clf, x))
    with pytest.raises(ConfigError, match="vgg16_bn.*batch_norm=true"):
        convolutionalize(clf.state_dict(), trunk_for(W))


def test_plain_weights_into_bn_trunk_and_conv_only_trunk(tiny):
    clf, _ = tiny
    bn_trunk = trunk_for(W, batch_norm=True)
    result = convolutionalize(clf.state_dict(), bn_trunk)  # SegNet: VGG16 convs, BN at init
    assert "conv1_1.weight" in result["copied"] and "conv1_1_bn.weight" in result["kept"]
    encoder = VGG16(W, fc=False)
    result = convolutionalize(clf.state_dict(), encoder)
    assert not any(k.startswith("fc") for k in result["copied"]) and result["kept"] == []
    torch.testing.assert_close(encoder.conv5_3.weight, clf.features[28].weight)


def test_trunk_shape_mismatch_names_key_and_shapes(tiny):
    clf, _ = tiny
    with pytest.raises(ConfigError) as e:
        convolutionalize(clf.state_dict(), trunk_for(0.25))
    msg = str(e.value)
    assert "conv1_1.weight" in msg and "(8, 3, 3, 3)" in msg and "(16, 3, 3, 3)" in msg
    assert "\n" not in msg
    # An fc6 of another kernel than VGG16's 7×7 and DeepLab's decimated 3×3: refused, not
    # silently reshaped.
    with pytest.raises(ConfigError, match=r"fc6\.weight is \(512, 64, 7, 7\).*\(512, 64, 5, 5\)"):
        convolutionalize(clf.state_dict(), trunk_for(W, fc6_kernel=5, fc6_padding=2))
    # DeepLab's 3×3 dilated fc6 as wide as the file's: every 3rd tap, every filter.
    deeplab = trunk_for(W, fc6_kernel=3, fc6_padding=12, fc6_dilation=12)
    convolutionalize(clf.state_dict(), deeplab)
    fc6 = clf.state_dict()["classifier.0.weight"].reshape(512, 64, 7, 7)
    assert torch.equal(deeplab.fc6.weight, fc6[:, :, ::3, ::3])


def test_bad_files(tiny, tmp_path):
    clf, _ = tiny
    state = clf.state_dict()

    missing = dict(state)
    del missing["features.14.bias"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ConfigError) as e:
        load_vgg16_classifier(tmp_path / "missing.pth")
    assert "missing.pth" in str(e.value) and "'features.14.bias'" in str(e.value)

    bad = dict(state)
    bad["classifier.0.weight"] = bad["classifier.0.weight"][:, :100].clone()
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(ConfigError) as e:
        load_vgg16_classifier(tmp_path / "shape.pth")
    msg = str(e.value)
    assert "shape.pth" in msg and "'classifier.0.weight'" in msg
    assert "(512, 100)" in msg and "(512, 3136)" in msg and "\n" not in msg

    bad = dict(state)
    bad["features.2.weight"] = torch.zeros(8, 5, 3, 3)
    torch.save(bad, tmp_path / "chain.pth")
    with pytest.raises(ConfigError, match=r"'features\.2\.weight' has shape \(8, 5, 3, 3\), "
                                          r"expected \(8, 8, 3, 3\)"):
        load_vgg16_classifier(tmp_path / "chain.pth")

    with pytest.raises(ConfigError, match="do not exist"):
        load_vgg16_classifier(tmp_path / "nope.pth")

    torch.save(Unsafe(), tmp_path / "object.pth")
    with pytest.raises(ConfigError) as e:
        load_vgg16_classifier(tmp_path / "object.pth")
    assert "weights_only" in str(e.value) and "\n" not in str(e.value)

    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ConfigError, match="expected a VGG16 classifier state dict"):
        load_vgg16_classifier(tmp_path / "tensor.pth")

    # Wrapped in {"state_dict": ...} with a DataParallel prefix: accepted.
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "dp.pth")
    assert set(load_vgg16_classifier(tmp_path / "dp.pth")) == set(state)


class Unsafe:
    """An arbitrary pickled object: torch.load(weights_only=True) must refuse it."""
