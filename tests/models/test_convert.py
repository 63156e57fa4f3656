"""Converting a VGG16 file between input conventions (``python -m fcnlab.models.convert``).

The same image through the original network with torchvision preprocessing and through the
converted one with Caffe preprocessing (both from :func:`fcnlab.data.transforms.preprocess`) gives
the same features wherever the receptive field stays inside the image; within reach of
``conv1_1``'s zero padding they differ (module docstring of :mod:`fcnlab.models.convert`).
Width-1/8 classifiers, 96×96 images.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnlab.data.transforms import PREPROCESS_MODES, preprocess
from fcnlab.errors import ConfigError
from fcnlab.models.convert import (
    CONVENTIONS,
    apply_convention,
    convert_file,
    fold_input_convention,
    main,
)
from fcnlab.models.fcn import FCN
from fcnlab.models.sidecar import INPUT_CONVENTIONS
from fcnlab.models.vgg import VGG16, VGG16Classifier
from fcnlab.models.weights import (
    convolutionalize,
    file_sha256,
    load_pretrained_trunk,
    load_vgg16_classifier,
    read_vgg16_classifier,
)

W = 0.125
ROOT = Path(__file__).resolve().parents[2]


def _image(seed: int = 0, size: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _classifier(batch_norm: bool = False) -> VGG16Classifier:
    torch.manual_seed(0)
    clf = VGG16Classifier(W, batch_norm=batch_norm)
    with torch.no_grad():  # non-trivial BN statistics, so the fold meets a real affine BN
        for m in clf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return clf.eval()


def _pool3(path: Path, mode: str, image: np.ndarray, batch_norm: bool) -> torch.Tensor:
    trunk = VGG16(W, conv1_padding=1, fc=False, batch_norm=batch_norm).eval()
    convolutionalize(load_vgg16_classifier(path), trunk)
    with torch.no_grad():
        return trunk(preprocess(image, mode)[None])["pool3"][0]


def test_conventions_are_the_data_pipelines():
    """The affine maps folded into conv1_1 are exactly what the data package feeds the net."""
    assert set(CONVENTIONS) == set(INPUT_CONVENTIONS) == set(PREPROCESS_MODES)
    image = _image(1, 8)
    raw = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1))
    for mode in PREPROCESS_MODES:
        torch.testing.assert_close(apply_convention(raw, mode), preprocess(image, mode),
                                   rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("batch_norm", [False, True], ids=["vgg16", "vgg16_bn"])
def test_converted_weights_give_the_same_features_away_from_the_border(tmp_path, batch_norm):
    src, dst = tmp_path / "tv.pth", tmp_path / "caffe.pth"
    torch.save(_classifier(batch_norm).state_dict(), src)
    meta = convert_file(src, dst, "caffe", source="torchvision")
    assert meta["preprocess"] == "caffe"
    assert meta["layout"] == ("torchvision" if batch_norm else "caffe")  # no Caffe names for BN
    assert read_vgg16_classifier(dst)[1] == meta["layout"]

    image = _image()
    original = _pool3(src, "torchvision", image, batch_norm)
    converted = _pool3(dst, "caffe", image, batch_norm)
    assert original.shape[-2:] == (12, 12)
    # conv1_1's padded border reaches the first 3 pool3 cells of each side (3 px at full size,
    # grown by every later 3×3 conv and halved by every pool).
    inner = (slice(None), slice(3, -3), slice(3, -3))
    scale = float(original[inner].abs().max())
    assert scale > 0
    torch.testing.assert_close(converted[inner], original[inner], rtol=1e-4, atol=1e-4 * scale)
    diff = (converted - original).abs()  # the caveat is real: ~1e-3 at the border, ~1e-6 inside
    assert diff.max() > max(1e-4 * scale, 100 * float(diff[inner].max()))
    # Everything but conv1_1 is the same tensor.
    a, b = load_vgg16_classifier(src), load_vgg16_classifier(dst)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("features.0."))


def test_round_trip_restores_conv1_1():
    clf = _classifier()
    w, b = clf.features[0].weight.detach(), clf.features[0].bias.detach()
    w2, b2 = fold_input_convention(*fold_input_convention(w, b, "torchvision", "caffe"),
                                   "caffe", "torchvision")
    torch.testing.assert_close(w2, w, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(b2, b, rtol=1e-5, atol=1e-5)
    wc, _ = fold_input_convention(w, b, "torchvision", "caffe")
    # Caffe's channel 0 is blue: the torchvision channel 2 weights, scaled by 1/(255·std_B).
    torch.testing.assert_close(wc[:, 0], w[:, 2] / (255 * 0.225))


def test_cli_converts_and_the_result_loads_with_caffe_input(tmp_path, capsys):
    src, dst = tmp_path / "vgg16.pth", tmp_path / "out" / "vgg16_caffe.pth"
    torch.save(_classifier().state_dict(), src)
    assert main(["--to", "caffe", str(src), str(dst)]) == 0
    assert "preprocess=torchvision, assumed (--to caffe)" in capsys.readouterr().out
    sidecar = json.loads(Path(str(dst) + ".json").read_text())
    assert sidecar["preprocess"] == "caffe" and sidecar["sha256"] == file_sha256(dst)
    assert sidecar["converted_from"]["sha256"] == file_sha256(src)
    net = FCN(num_classes=3, width=W)
    assert load_pretrained_trunk(net, dst, preprocess="caffe")["preprocess"] == "caffe"
    with pytest.raises(ConfigError, match="the run uses preprocess=torchvision"):
        load_pretrained_trunk(net, dst, preprocess="torchvision")
    # The Caffe layout says caffe by itself: the file without its sidecar still loads.
    Path(str(dst) + ".json").unlink()
    assert load_pretrained_trunk(net, dst, preprocess="caffe")["preprocess_from"] == (
        "the Caffe layer names")

    assert main(["--to", "caffe", str(src), str(dst)]) == 1  # exists
    assert "exists; expected a new file (or --force)" in capsys.readouterr().err
    assert main(["--to", "caffe", str(dst), str(tmp_path / "again.pth")]) == 1
    assert "already expects preprocess=caffe" in capsys.readouterr().err
    # And back: torchvision layout, torchvision convention, declared by its sidecar.
    back = tmp_path / "back.pth"
    assert main(["--to", "torchvision", str(dst), str(back)]) == 0
    assert load_pretrained_trunk(net, back, preprocess="torchvision")["preprocess_from"].startswith(
        "sidecar")
    state, orig = load_vgg16_classifier(back), load_vgg16_classifier(src)
    torch.testing.assert_close(state["features.0.weight"], orig["features.0.weight"])


def test_declare_writes_the_sidecar_and_keeps_a_pretraining_record(tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save(_classifier().state_dict(), path)
    net = FCN(num_classes=3, width=W)
    with pytest.raises(ConfigError, match="convention is unknown"):
        load_pretrained_trunk(net, path, preprocess="torchvision")
    run = subprocess.run([sys.executable, "-m", "fcnlab.models.convert", "--declare",
                          "torchvision", str(path)], cwd=ROOT, capture_output=True, text=True, check=False,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert load_pretrained_trunk(net, path, preprocess="torchvision")["preprocess"] == "torchvision"

    sidecar = Path(str(path) + ".json")
    sidecar.write_text(json.dumps({"preprocess": "torchvision", "crop_size": 224}))
    assert main(["--declare", "caffe", str(path)]) == 1  # changing it needs --force
    assert main(["--declare", "caffe", "--force", str(path)]) == 0
    meta = json.loads(sidecar.read_text())
    assert meta["preprocess"] == "caffe" and meta["crop_size"] == 224
    assert meta["sha256"] == file_sha256(path)
    with pytest.raises(SystemExit):  # --declare takes one file, --to two
        main(["--declare", "caffe", str(path), str(tmp_path / "x.pth")])
