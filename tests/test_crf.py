"""Dense CRF post-processing (DeepLab-LargeFOV-denseCRF). Quality tests need pydensecrf2."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
import torch

from fcnlab.crf import (
    MISSING_MESSAGE, CRFConfig, crf_available, crf_predict, dense_crf, require_crf,
)
from fcnlab.data.transforms import preprocess
from fcnlab.errors import ConfigError

needs_crf = pytest.mark.skipif(not crf_available(),
                               reason='pydensecrf2 not installed (pip install "fcnlab[crf]")')

H, W, EDGE = 40, 60, 30  # two flat colour regions split by a vertical edge at column 30


def toy():
    image = np.zeros((H, W, 3), np.uint8)
    image[:, :EDGE] = (200, 40, 30)
    image[:, EDGE:] = (30, 60, 190)
    truth = np.zeros((H, W), np.int64)
    truth[:, EDGE:] = 1
    # A coarse, smeared prediction whose boundary is 6 px too far right, plus some noise: the kind
    # a 1/8-resolution net upsampled bilinearly gives.
    rng = np.random.default_rng(0)
    x = np.arange(W)[None, :] + rng.normal(0, 1.5, (H, W))
    p1 = 1 / (1 + np.exp(-(x - (EDGE + 6)) / 4.0))
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    return image, probs, truth


@needs_crf
def test_crf_snaps_boundary_to_the_colour_edge():
    image, probs, truth = toy()
    before = probs.argmax(0)
    after = dense_crf(probs, image)
    assert after.shape == (H, W) and after.dtype == np.int64
    wrong_before = int((before != truth).sum())
    wrong_after = int((after != truth).sum())
    assert wrong_before >= 6 * H  # the shifted boundary
    assert (after != before).any()
    assert wrong_after <= wrong_before
    assert wrong_after < wrong_before / 4  # and much better, not just "not worse"


@needs_crf
def test_crf_keeps_a_confident_prediction_and_validates_inputs():
    image, _, truth = toy()
    probs = np.stack([truth == 0, truth == 1]).astype(np.float64) * 0.98 + 0.01
    np.testing.assert_array_equal(dense_crf(probs, image, iterations=5), truth)
    with pytest.raises(ValueError, match="uint8 RGB"):
        dense_crf(probs, image.astype(np.float32))
    with pytest.raises(ValueError, match="K × H × W"):
        dense_crf(probs[0], image)
    with pytest.raises(ConfigError, match="crf.iterations"):
        dense_crf(probs, image, iterations=0)


@needs_crf
def test_crf_predict_batches_from_network_input():
    image, probs, truth = toy()
    x = preprocess(image, "caffe")[None].repeat(2, 1, 1, 1)  # what the net sees
    logits = torch.from_numpy(np.log(probs))[None].repeat(2, 1, 1, 1)
    labels = crf_predict(logits, x, preprocess="caffe", config={"iterations": 10})
    assert labels.shape == (2, H, W) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels[0].numpy(), dense_crf(probs, image))


def test_config_defaults_and_validation():
    cfg = CRFConfig()
    assert (cfg.iterations, cfg.bilateral_compat, cfg.bilateral_sxy, cfg.bilateral_srgb,
            cfg.gaussian_compat, cfg.gaussian_sxy) == (10, 4, 121, 5, 3, 3)
    assert CRFConfig.from_dict({"bilateral_sxy": 80}).bilateral_sxy == 80
    with pytest.raises(ConfigError, match="unknown keys"):
        CRFConfig.from_dict({"bi_xy_std": 80})
    with pytest.raises(ConfigError, match="bilateral_srgb"):
        CRFConfig(bilateral_srgb=0)


def test_require_crf_without_the_package(monkeypatch):
    for name in ("pydensecrf", "pydensecrf.densecrf"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import pydensecrf...` fail
    real_import = builtins.__import__

    def no_crf(name, *args, **kwargs):
        if name.startswith("pydensecrf"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_crf)
    with pytest.raises(ConfigError) as e:
        require_crf()
    assert str(e.value) == MISSING_MESSAGE and "\n" not in str(e.value)
    assert "pydensecrf2" in str(e.value) and 'fcnlab[crf]' in str(e.value)
    assert not crf_available()
    with pytest.raises(ConfigError, match="optional extra"):
        dense_crf(np.ones((2, 2, 2), np.float32) / 2, np.zeros((2, 2, 3), np.uint8))
