"""Caffe-converted VGG16 (``conv1_1`` … ``fc8`` keys) loads to the same trunk as torchvision's.

The Caffe-layout files are written here from a random width-1/8 :class:`VGG16Classifier` with
:func:`torchvision_to_caffe` (fc6 both as an InnerProduct, 512×3136, and as a 7×7 convolution,
as an FCN net's own state dict holds it).
"""

from __future__ import annotations

import logging

import pytest
import torch

from fcnlab.errors import ConfigError
from fcnlab.models.layouts import (
    CAFFE_CONVS,
    caffe_to_torchvision,
    detect_layout,
    load_caffe_vgg16,
    torchvision_to_caffe,
)
from fcnlab.models.sidecar import check_preprocess
from fcnlab.models.vgg import VGG16, VGG16Classifier
from fcnlab.models.weights import convolutionalize, load_pretrained_trunk, load_vgg16_classifier

W = 0.125


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return VGG16Classifier(W).eval()


def _trunk_from(state) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)  # same init everywhere, so only the copied tensors can differ
    trunk = VGG16(W, conv1_padding=100, fc=True)
    convolutionalize(state, trunk)
    return trunk.state_dict()


def test_caffe_key_names_and_shapes(classifier):
    caffe = torchvision_to_caffe(classifier.state_dict())
    assert list(CAFFE_CONVS) == [f"conv{b}_{c}" for b, n in enumerate((2, 2, 3, 3, 3), 1)
                                 for c in range(1, n + 1)]
    assert tuple(caffe["conv1_1.weight"].shape) == (8, 3, 3, 3)
    assert tuple(caffe["fc6.weight"].shape) == (512, 64 * 7 * 7)
    assert tuple(caffe["fc8.weight"].shape) == (1000, 512)
    conv = torchvision_to_caffe(classifier.state_dict(), fc_as_conv=True)
    assert tuple(conv["fc6.weight"].shape) == (512, 64, 7, 7)
    assert tuple(conv["fc7.weight"].shape) == (512, 512, 1, 1)
    assert detect_layout(caffe) == "caffe"
    assert detect_layout(classifier.state_dict()) == "torchvision"


@pytest.mark.parametrize("fc_as_conv", [False, True])
def test_caffe_file_loads_to_the_same_trunk(classifier, tmp_path, fc_as_conv):
    tv_state = classifier.state_dict()
    torch.save(tv_state, tmp_path / "tv.pth")
    torch.save(torchvision_to_caffe(tv_state, fc_as_conv=fc_as_conv), tmp_path / "caffe.pth")

    converted = load_caffe_vgg16(tmp_path / "caffe.pth")
    assert set(converted) == set(tv_state)
    for key, value in tv_state.items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0)
    # The generic loader (model.pretrained) accepts both layouts and gives the same tensors.
    via_loader = load_vgg16_classifier(tmp_path / "caffe.pth")
    assert set(via_loader) == set(tv_state)

    a = _trunk_from(load_vgg16_classifier(tmp_path / "tv.pth"))
    b = _trunk_from(via_loader)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_round_trip_is_exact(classifier):
    state = classifier.state_dict()
    back = caffe_to_torchvision(torchvision_to_caffe(state, fc_as_conv=True))
    for key, value in back.items():
        assert torch.equal(value, state[key])


def _caffe(classifier):
    return dict(torchvision_to_caffe(classifier.state_dict()))


def test_missing_caffe_key_is_named(classifier, tmp_path):
    state = _caffe(classifier)
    del state["conv3_2.bias"]
    torch.save(state, tmp_path / "missing.pth")
    for load in (load_caffe_vgg16, load_vgg16_classifier):
        with pytest.raises(ConfigError) as e:
            load(tmp_path / "missing.pth")
        msg = str(e.value)
        assert "missing.pth" in msg and "'conv3_2.bias'" in msg and "missing" in msg
        assert "\n" not in msg

    state = _caffe(classifier)
    del state["fc7.weight"]
    torch.save(state, tmp_path / "nofc7.pth")
    with pytest.raises(ConfigError, match=r"'fc7\.weight' is missing"):
        load_vgg16_classifier(tmp_path / "nofc7.pth")


def test_misshapen_caffe_key_is_named(classifier, tmp_path):
    state = _caffe(classifier)
    state["fc6.weight"] = state["fc6.weight"][:, :100].clone()
    torch.save(state, tmp_path / "fc6.pth")
    with pytest.raises(ConfigError) as e:
        load_vgg16_classifier(tmp_path / "fc6.pth")
    msg = str(e.value)
    assert "fc6.pth" in msg and "'fc6.weight'" in msg and "(512, 100)" in msg
    assert "(512, 3136)" in msg and "(512, 64, 7, 7)" in msg

    state = _caffe(classifier)
    state["conv2_1.weight"] = torch.zeros(16, 5, 3, 3)  # conv1_2 gives 8 channels, not 5
    torch.save(state, tmp_path / "chain.pth")
    with pytest.raises(ConfigError, match=r"'conv2_1\.weight' has shape \(16, 5, 3, 3\), "
                                          r"expected \(16, 8, 3, 3\)"):
        load_caffe_vgg16(tmp_path / "chain.pth")

    state = _caffe(classifier)
    state["fc8.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "fc8.pth")
    with pytest.raises(ConfigError, match=r"'fc8\.bias' has shape \(7,\), expected \(1000,\)"):
        load_caffe_vgg16(tmp_path / "fc8.pth")


def test_unknown_layout_names_the_keys_it_expected(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError) as e:
        load_vgg16_classifier(tmp_path / "other.pth")
    msg = str(e.value)
    assert "'features.0.weight'" in msg and "'conv1_1.weight'" in msg and "'encoder.weight'" in msg
    with pytest.raises(ConfigError, match="torchvision layout"):
        load_caffe_vgg16(_save_tv(tmp_path))


def _save_tv(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tv_only.pth"
    torch.save(VGG16Classifier(W).state_dict(), path)
    return path


def test_caffe_weights_with_torchvision_input_are_refused(classifier, tmp_path, caplog):
    """The Caffe layer names say `caffe` (docs/reference.md §6): torchvision input is an error
    naming both values and the file, unless allowed (then a warning in the record)."""
    from fcnlab.models.fcn import FCN

    path = tmp_path / "caffe.pth"
    torch.save(_caffe(classifier), path)
    assert check_preprocess(path, "caffe", "caffe") == {
        "preprocess": "caffe", "preprocess_from": "the Caffe layer names",
        "preprocess_warning": None}
    with pytest.raises(ConfigError) as e:
        check_preprocess(path, "caffe", "torchvision")
    msg = str(e.value)
    assert str(path) in msg and "expects data.datamodule.preprocess=caffe" in msg
    assert "the run uses preprocess=torchvision" in msg and "\n" not in msg

    net = FCN(num_classes=3, width=W)
    with pytest.raises(ConfigError, match="preprocess=torchvision"):
        load_pretrained_trunk(net, path, preprocess="torchvision")
    with caplog.at_level(logging.WARNING):
        report = load_pretrained_trunk(net, path, preprocess="torchvision", allow_mismatch=True)
    assert report["layout"] == "caffe" and report["copied"] == 30
    assert "preprocess=caffe" in report["preprocess_warning"]
    assert report["preprocess_warning"] in caplog.text
    assert load_pretrained_trunk(net, path, preprocess="caffe")["preprocess_warning"] is None
    # A declaration overrides the layout (torchvision weights renamed to Caffe names).
    report = load_pretrained_trunk(net, path, preprocess="torchvision", declared="torchvision")
    assert report["preprocess"] == "torchvision" and report["preprocess_warning"] is None
