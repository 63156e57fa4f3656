"""Every network and its switches through the real train(cfg) / evaluate(cfg) path.

debug=fast sizes (width 1/16, 40x56 images), two iterations: these check wiring, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import compose_cfg
from fcnlab.crf import crf_available
from fcnlab.tasks.evaluate import evaluate
from fcnlab.tasks.train import train

SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2"]


def _run(tmp_path: Path, data_dir: Path, overrides: list[str]) -> dict:
    cfg = compose_cfg("train", SHORT + overrides, tmp_path, data_dir=data_dir)
    record = train(cfg)
    assert record["status"] == "finished"
    return record


@pytest.mark.parametrize("model", ["fcn_bilinear", "fcn_learnt_deconv", "deeplab_largefov"])
def test_model_trains(tmp_path, data_dir, model):
    record = _run(tmp_path, data_dir, [f"model={model}"])
    assert record["model"] == model
    assert [e["iteration"] for e in record["evaluations"]] == [2]


def test_deeplab_trains_on_subsampled_labels(tmp_path, data_dir):
    # The paper's protocol: stride-8 logits against labels subsampled by 8 (the module matches
    # the label grid to the logits), while evaluation scores full-size predictions.
    record = _run(tmp_path, data_dir, ["model=deeplab_largefov",
                                       "model.net.train_on=subsampled_labels"])
    assert record["evaluations"][-1]["confmat"]
    assert sum(map(sum, record["evaluations"][-1]["confmat"])) > 0


def test_bn_recompute_callback_runs_before_evaluation(tmp_path, data_dir):
    _run(tmp_path, data_dir, ["model=segnet", "callbacks=[default,bn_recompute]",
                              "callbacks.bn_recompute.max_batches=2"])
    rows = (tmp_path / "run" / "csv" / "metrics.csv").read_text()
    assert "bn_recompute/images" in rows.splitlines()[0]


@pytest.mark.skipif(not crf_available(), reason='needs the crf extra: pip install "fcnlab[crf]"')
def test_eval_with_dense_crf(tmp_path, data_dir):
    _run(tmp_path, data_dir, ["model=deeplab_largefov"])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}", "crf.enabled=true", "crf.iterations=2"],
                      tmp_path / "eval", data_dir=data_dir)
    record = evaluate(cfg)
    assert record["crf"] is True and record["status"] == "finished"
    on_disk = json.loads((tmp_path / "eval" / "run" / "results.json").read_text())
    assert on_disk["evaluations"][0]["iteration"] == 2


def test_pretrained_classifier_initialises_the_trunk(tmp_path, data_dir):
    import torch

    from fcnlab.errors import ConfigError

    from fcnlab.models.vgg import VGG16Classifier
    from fcnlab.models.weights import file_sha256

    classifier = VGG16Classifier(0.0625, fc_channels=1024)  # the embedded scale's fc width
    path = tmp_path / "vgg16.pt"
    torch.save(classifier.state_dict(), path)
    with pytest.raises(ConfigError, match=r"fc layers differ.*model\.net\.fc_channels"):
        _run(tmp_path / "wide", data_dir, ["model=fcn32s", f"model.pretrained={path}",
                                           "model.pretrained_preprocess=torchvision",
                                           "model.net.fc_channels=4096", "trainer.max_steps=1"])
    record = _run(tmp_path, data_dir, ["model=fcn32s", f"model.pretrained={path}",
                                       "model.pretrained_preprocess=torchvision",
                                       "trainer.max_steps=1", "trainer.val_check_interval=1"])
    assert record["pretrained"]["sha256"] == file_sha256(path)
    assert record["pretrained"]["copied"] == 2 * 15  # 13 convs + fc6 + fc7, weight and bias


def test_missing_pretrained_file_is_a_config_error(tmp_path, data_dir):
    from fcnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.pretrained"):
        _run(tmp_path, data_dir, ["model.pretrained=/no/such/vgg16.pt"])


def test_median_frequency_class_weights_reach_the_loss(tmp_path, data_dir):
    import torch

    record = _run(tmp_path, data_dir, ["loss.class_weights=median_freq"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    weights = ckpt["hyper_parameters"]["loss"]["class_weights"]
    assert len(weights) == 11 and all(isinstance(w, float) for w in weights)
    # background is the most frequent class, so it gets the smallest weight
    assert weights[0] == min(w for w in weights if w > 0)
    assert record["status"] == "finished"


def test_weighted_mean_loss_is_pytorch_weighted_mean():
    import torch
    import torch.nn.functional as F

    from fcnlab.module import SegmentationModule

    w = [0.5, 2.0, 1.0]
    module = SegmentationModule(
        net={"_target_": "fcnlab.models.FCN", "num_classes": 3, "variant": "32s",
             "width": 0.0625},
        optim={}, loss={"reduction": "mean", "class_weights": w}, num_classes=3,
        class_names=["a", "b", "c"])
    logits, target = torch.randn(2, 3, 5, 7), torch.randint(0, 3, (2, 5, 7))
    target[0, 0] = 255
    expected = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255)
    assert torch.allclose(module.loss(logits, target), expected)


def test_vgg16_classifier_decimated_into_deeplab_fc6():
    import torch

    from fcnlab.models import DeepLabLargeFOV, VGG16Classifier, convolutionalize

    classifier = VGG16Classifier(0.0625)  # fc 256 wide; DeepLab's fc 1024 * 1/16 = 64
    net = DeepLabLargeFOV(3, 0.0625)
    report = convolutionalize(classifier.state_dict(), net.trunk)
    fc6 = classifier.state_dict()["classifier.0.weight"].reshape(256, 32, 7, 7)
    assert torch.equal(net.trunk.fc6.weight, fc6[::4, :, ::3, ::3])
    assert "fc7.weight" in report["copied"]
