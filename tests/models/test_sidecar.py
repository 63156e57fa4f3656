"""The input convention a VGG16 weights file expects, checked against the run's preprocess.

The convention is declared (``model.pretrained_preprocess``), read from the file's ``<file>.json``
sidecar or from the Caffe layout, never assumed: an unknown or mismatched convention is an error
unless explicitly allowed (docs/reference.md §6). The file is a random width-1/8
:class:`VGG16Classifier` in the torchvision layout, loaded into an FCN's trunk.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from fcnlab.errors import ConfigError
from fcnlab.models.vgg import VGG16Classifier
from fcnlab.models.weights import load_pretrained_trunk

W = 0.125


# ----------------------------------------------------------------------------- input convention
# What input the weights expect (docs/reference.md §6) is declared, read from the sidecar or the
# Caffe layout, never assumed: an unknown or mismatched convention is an error before any tensor
# is copied, unless model.allow_preprocess_mismatch (a warning, recorded).
@pytest.fixture
def tv_file(tmp_path):
    torch.manual_seed(0)  # the classifier tests/models/test_weights.py convolutionalizes
    path = tmp_path / "vgg16_tv.pth"
    torch.save(VGG16Classifier(W).state_dict(), path)
    return path


def _fcn():
    from fcnlab.models.fcn import FCN

    torch.manual_seed(3)
    return FCN(num_classes=3, width=W)


def _sidecar(path, **meta):
    import json

    Path(str(path) + ".json").write_text(json.dumps(meta))


def test_undeclared_torchvision_file_is_an_error_naming_the_file(tv_file):
    net = _fcn()
    before = net.trunk.conv1_1.weight.clone()
    for preprocess in ("caffe", "torchvision"):  # unknown is an error even when it might match
        with pytest.raises(ConfigError) as e:
            load_pretrained_trunk(net, tv_file, preprocess=preprocess)
        msg = str(e.value)
        assert str(tv_file) in msg and "convention is unknown" in msg and "\n" not in msg
        assert "model.pretrained_preprocess=torchvision" in msg
        assert "python -m fcnlab.models.convert --declare torchvision" in msg
    assert torch.equal(net.trunk.conv1_1.weight, before)  # refused before any copy
    # Only a caller without a data set (preprocess=None) loads it unchecked.
    report = load_pretrained_trunk(net, tv_file)
    assert report["preprocess"] is None and report["copied"] == 30


def test_declared_convention_is_checked_against_the_data(tv_file):
    net = _fcn()
    report = load_pretrained_trunk(net, tv_file, preprocess="torchvision", declared="torchvision")
    assert report["preprocess"] == "torchvision" and report["preprocess_warning"] is None
    assert report["preprocess_from"] == "model.pretrained_preprocess"
    with pytest.raises(ConfigError) as e:
        load_pretrained_trunk(net, tv_file, preprocess="caffe", declared="torchvision")
    msg = str(e.value)
    assert str(tv_file) in msg and "\n" not in msg
    assert "expects data.datamodule.preprocess=torchvision" in msg
    assert "the run uses preprocess=caffe" in msg and "model.allow_preprocess_mismatch=true" in msg
    with pytest.raises(ConfigError, match=r"pretrained_preprocess: expected null or one of"):
        load_pretrained_trunk(net, tv_file, preprocess="caffe", declared="bgr")


def test_allowed_mismatch_is_a_recorded_warning(tv_file, caplog):
    with caplog.at_level(logging.WARNING):
        report = load_pretrained_trunk(_fcn(), tv_file, preprocess="caffe",
                                       declared="torchvision", allow_mismatch=True)
    warning = report["preprocess_warning"]
    assert "preprocess=torchvision" in warning and "preprocess=caffe" in warning
    assert "allowed by model.allow_preprocess_mismatch=true" in warning and warning in caplog.text
    assert report["copied"] == 30
    # An unknown convention, allowed, loads with the reason recorded too.
    report = load_pretrained_trunk(_fcn(), tv_file, preprocess="caffe", allow_mismatch=True)
    assert "convention is unknown" in report["preprocess_warning"]


def test_sidecar_is_honoured_and_a_declaration_overrides_it(tv_file):
    from fcnlab.models.weights import file_sha256

    _sidecar(tv_file, preprocess="torchvision", sha256=file_sha256(tv_file))
    report = load_pretrained_trunk(_fcn(), tv_file, preprocess="torchvision")
    assert report["preprocess"] == "torchvision" and report["preprocess_from"].startswith("sidecar")
    with pytest.raises(ConfigError, match=r"expects data\.datamodule\.preprocess=torchvision "
                                          r"input \(from sidecar .*vgg16_tv\.pth\.json"):
        load_pretrained_trunk(_fcn(), tv_file, preprocess="caffe")
    report = load_pretrained_trunk(_fcn(), tv_file, preprocess="caffe", declared="caffe")
    assert report["preprocess_from"] == "model.pretrained_preprocess"


def test_broken_or_stale_sidecar_is_an_error(tv_file):
    Path(str(tv_file) + ".json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"vgg16_tv\.pth\.json.*could not be read as JSON"):
        load_pretrained_trunk(_fcn(), tv_file, preprocess="torchvision")
    _sidecar(tv_file, preprocess="bgr")
    with pytest.raises(ConfigError, match=r"\"preprocess\" is 'bgr'; expected one of"):
        load_pretrained_trunk(_fcn(), tv_file, preprocess="torchvision")
    _sidecar(tv_file, preprocess="torchvision", sha256="0" * 64)  # written for another file
    with pytest.raises(ConfigError, match=r"describes a file with sha256 0{64}.*replaced"):
        load_pretrained_trunk(_fcn(), tv_file, preprocess="torchvision")


def _train_cfg(tmp_path, overrides):
    from conftest import compose_cfg

    return compose_cfg("train", ["model=fcn32s", "model.net.width=0.125", *overrides], tmp_path)


def test_config_check_stops_a_declared_mismatch_before_the_run(tv_file, tmp_path):
    """check_train_config (before any folder, data set or network) refuses what it can know
    without reading the tensors: the declared convention and the sidecar's."""
    from fcnlab.config import check_train_config

    pre = [f"model.pretrained={tv_file}", "data.datamodule.preprocess=caffe"]
    with pytest.raises(ConfigError, match=r"expects data\.datamodule\.preprocess=torchvision.*"
                                          r"the run uses preprocess=caffe"):
        check_train_config(_train_cfg(tmp_path, [*pre, "model.pretrained_preprocess=torchvision"]))
    check_train_config(_train_cfg(tmp_path, [*pre, "model.pretrained_preprocess=torchvision",
                                             "model.allow_preprocess_mismatch=true"]))
    _sidecar(tv_file, preprocess="torchvision")
    with pytest.raises(ConfigError, match=r"from sidecar"):
        check_train_config(_train_cfg(tmp_path, pre))
    with pytest.raises(ConfigError, match=r"model\.pretrained_preprocess: expected null"):
        check_train_config(_train_cfg(tmp_path, [*pre, "model.pretrained_preprocess=rgb"]))
    with pytest.raises(ConfigError, match=r"model\.allow_preprocess_mismatch: expected true or "):
        check_train_config(_train_cfg(tmp_path, [*pre, "model.allow_preprocess_mismatch=1"]))


def test_train_refuses_an_undeclared_file_and_records_an_allowed_mismatch(tv_file, tmp_path,
                                                                         data_dir):
    import json

    from fcnlab.tasks.train import train

    pre = [f"model.pretrained={tv_file}", "data.datamodule.preprocess=caffe",
           "trainer.max_steps=1", "trainer.val_check_interval=1",
           "model.net.fc_channels=4096"]  # VGG16's fc width, the file's (embedded scale: 1024)
    with pytest.raises(ConfigError, match=r"vgg16_tv\.pth' is a torchvision-layout VGG16 file "
                                          r"whose input convention is unknown"):
        train(_train_cfg(tmp_path / "undeclared", pre))
    allowed = [*pre, "model.pretrained_preprocess=torchvision",
               "model.allow_preprocess_mismatch=true"]
    record = train(_train_cfg(tmp_path / "allowed", allowed))
    on_disk = json.loads((tmp_path / "allowed" / "run" / "results.json").read_text())
    for rec in (record, on_disk):
        assert rec["pretrained"]["preprocess"] == "torchvision"
        assert "allowed by model.allow_preprocess_mismatch=true" in rec["pretrained"][
            "preprocess_warning"]
