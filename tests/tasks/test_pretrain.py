"""The embedded pretraining recipe (experiment=pretrain_vgg, fcnlab.tasks.pretrain).

Crop extraction is checked on a hand-made mask; one tiny run through ``pretrain(cfg)`` (debug=fast:
width 1/16, 16 training images, 4 iterations, 32×32 crops) must write a classifier file that
``load_vgg16_classifier`` accepts and ``convolutionalize`` loads into an FCN trunk of the same
width, and ``train(cfg)`` must dispatch to it and then load the file as ``model.pretrained``.
No accuracy is asserted here: the "beats random features" measurement is in the README.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.models.weights import convolutionalize, file_sha256, load_vgg16_classifier
from fcnlab.models.fcn import FCN
from fcnlab.tasks.pretrain import (
    BalancedSampler, CropDataset, balanced, crop_centres, make_crop, pretrain, pretrain_params,
)


def _disk(mask, cy, cx, r, value):
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


@pytest.fixture
def hand_mask():
    """64×160: two class-1 disks, a class-3 box with a void border, a 2-pixel class-2 fragment,
    and an empty background region on the right (columns 110-159)."""
    mask = np.zeros((64, 160), np.uint8)
    _disk(mask, 16, 16, 6, 1)
    _disk(mask, 44, 20, 5, 1)
    mask[29:43, 49:69] = 255  # void band around the box
    mask[30:42, 50:68] = 3  # box: rows 30-41, columns 50-67 -> centre (35.5, 58.5)
    mask[5, 80:82] = 2  # a fragment below min_pixels
    return mask


def test_crops_are_object_centred_with_their_class(hand_mask):
    crops = crop_centres(hand_mask, 11, min_pixels=8, background_per_image=0)
    assert sorted(c[0] for c in crops) == [1, 1, 3]  # the 2-pixel class-2 fragment gave no crop
    disks = sorted(c[1:] for c in crops if c[0] == 1)
    assert disks == [(16, 16), (44, 20)]
    (_, cy, cx), = [c for c in crops if c[0] == 3]
    assert abs(cy - 35.5) <= 0.5 and abs(cx - 58.5) <= 0.5  # the box's centre, void excluded
    for label, cy, cx in crops:  # every crop is centred on its object
        assert hand_mask[cy, cx] == label
    fragment = [c for c in crop_centres(hand_mask, 11, min_pixels=2, background_per_image=0)
                if c[0] == 2]
    assert len(fragment) == 1 and fragment[0][1] == 5 and fragment[0][2] in (80, 81)


def test_background_crops_keep_their_distance(hand_mask):
    rng = np.random.default_rng(0)
    crops = crop_centres(hand_mask, 11, background_per_image=5, background_margin=20, rng=rng)
    background = [(cy, cx) for label, cy, cx in crops if label == 0]
    assert len(background) == 5
    others = np.argwhere(hand_mask != 0)
    for cy, cx in background:
        assert hand_mask[cy, cx] == 0
        assert np.min(np.hypot(others[:, 0] - cy, others[:, 1] - cx)) >= 20
    # no pixel that far from everything: no background crop
    assert not [c for c in crop_centres(hand_mask, 11, background_per_image=3,
                                        background_margin=100) if c[0] == 0]


def test_balanced_draws_every_class_equally():
    labels = [0] * 50 + [1] * 7 + [3] * 2 + [5] * 20
    idx = balanced(labels, 10, np.random.default_rng(0))
    counts = Counter(labels[i] for i in idx)
    assert counts == {0: 10, 1: 10, 3: 10, 5: 10}
    assert len(set(idx[np.asarray(labels)[idx] == 0])) == 10  # enough items: no repeats
    sampler = BalancedSampler(labels, seed=0)
    first, second = list(sampler), list(sampler)
    assert Counter(labels[i] for i in first) == {c: len(labels) // 4 for c in (0, 1, 3, 5)}
    assert first != second  # a fresh order every pass


def test_make_crop_centres_the_point_and_pads_with_zero():
    image = torch.arange(1, 1 + 3 * 10 * 12, dtype=torch.float32).view(3, 10, 12)
    crop = make_crop(image, 2, 9, 8)  # near the top-right corner
    assert crop.shape == (3, 8, 8)
    assert torch.equal(crop[:, 4, 4], image[:, 2, 9])
    assert torch.equal(crop[:, 2:, :7], image[:, 0:6, 5:12])
    assert (crop[:, :2] == 0).all() and (crop[:, :, 7:] == 0).all()
    dataset = CropDataset([image], [(0, 4, 5, 6)], 8)
    x, label = dataset[0]
    assert label == 4 and torch.equal(x[:, 4, 4], image[:, 5, 6])


def test_bad_pretrain_keys_are_config_errors(tmp_path):
    cfg = compose_cfg("train", ["experiment=pretrain_vgg", "pretrain.crop_size=16"], tmp_path)
    with pytest.raises(ConfigError, match=r"pretrain\.crop_size: expected an int >= 32"):
        pretrain_params(cfg)
    cfg = compose_cfg("train", ["experiment=pretrain_vgg", "+pretrain.crops=3"], tmp_path)
    with pytest.raises(ConfigError, match=r"pretrain: unknown keys \['crops'\]"):
        pretrain_params(cfg)
    GlobalHydra.instance().clear()


TINY = ["experiment=pretrain_vgg", "pretrain.crop_size=32", "pretrain.batch_size=4",
        "pretrain.eval_batch_size=16"]


def test_tiny_pretrain_writes_a_classifier_the_fcn_trunk_loads(tmp_path, data_dir):
    cfg = compose_cfg("train", TINY, tmp_path, data_dir=data_dir)
    assert cfg.task == "pretrain" and cfg.pretrain.width == cfg.model.net.width == 0.0625
    record = pretrain(cfg)
    GlobalHydra.instance().clear()
    path = tmp_path / "run" / "vgg16_classifier.pt"
    assert record["status"] == "finished" and record["iterations"] == 4
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["classifier"]["sha256"] == file_sha256(path)
    assert saved["classifier"]["preprocess"] == "torchvision"  # scale=embedded
    assert json.loads((tmp_path / "run" / "vgg16_classifier.pt.json").read_text())[
        "sha256"] == file_sha256(path)
    assert [e["iteration"] for e in saved["evaluations"]] == [2, 4]
    assert 0 <= saved["evaluations"][-1]["accuracy"] <= 1
    crops = saved["pretrain"]["crops"]["train"]
    assert crops["background"] > 0 and sum(crops.values()) > crops["background"]

    state = load_vgg16_classifier(path)
    # fc8: 11 classes x 1024/16 (the embedded scale's fc width, deviations.fc_channels)
    assert tuple(state["classifier.6.weight"].shape) == (11, 64)
    net = FCN(num_classes=11, variant="32s", width=0.0625, freeze_trunk=True, fc_channels=1024)
    report = convolutionalize(state, net.trunk)
    assert len(report["copied"]) == 30
    fc6 = state["classifier.0.weight"]
    assert torch.equal(net.trunk.fc6.weight, fc6.view(fc6.shape[0], -1, 7, 7))
    assert torch.equal(net.trunk.conv1_1.weight, state["features.0.weight"])
    # 32-px crops: pool5 is one cell, so fc6 is saved on its centre tap (fold.centre_fc6)
    taps = fc6.view(fc6.shape[0], -1, 7, 7)
    off_centre = taps.clone()
    off_centre[:, :, 3, 3] = 0
    assert taps[:, :, 3, 3].abs().sum() > 0 and not off_centre.any()
    assert saved["classifier"]["fc6"] == "centre_tap"


def test_a_bn_pretrain_saves_the_plain_layout_with_its_bns_folded(tmp_path, data_dir):
    cfg = compose_cfg("train", TINY + ["pretrain.batch_norm=true"], tmp_path, data_dir=data_dir)
    pretrain(cfg)
    GlobalHydra.instance().clear()
    path = tmp_path / "run" / "vgg16_classifier.pt"
    state = load_vgg16_classifier(path)
    assert "features.1.running_mean" not in state and "features.2.weight" in state  # plain
    sidecar = json.loads((tmp_path / "run" / "vgg16_classifier.pt.json").read_text())
    assert sidecar["batch_norm_folded"] is True
    # no BN: the paper's FCN loads it (fc 1024: the embedded scale's)
    net = FCN(num_classes=11, variant="32s", width=0.0625, fc_channels=1024)
    assert len(convolutionalize(state, net.trunk)["copied"]) == 30


def test_train_dispatches_and_fcn32s_fixed_loads_the_file(tmp_path, data_dir):
    from fcnlab.tasks.train import train

    cfg = compose_cfg("train", TINY, tmp_path / "pre", data_dir=data_dir)
    record = train(cfg)
    GlobalHydra.instance().clear()
    assert record["task"] == "pretrain"
    path = tmp_path / "pre" / "run" / "vgg16_classifier.pt"
    cfg = compose_cfg("train", ["model=fcn32s_fixed", f"model.pretrained={path}",
                                "trainer.max_steps=2"], tmp_path / "fcn", data_dir=data_dir)
    record = train(cfg)
    GlobalHydra.instance().clear()
    assert record["pretrained"]["sha256"] == file_sha256(path)
    assert record["pretrained"]["copied"] == 30
    assert record["pretrained"]["preprocess_warning"] is None  # both torchvision
    # The sidecar says torchvision; a caffe run is refused unless the mismatch is allowed.
    cfg = compose_cfg("train", ["model=fcn32s_fixed", f"model.pretrained={path}",
                                "data.datamodule.preprocess=caffe", "trainer.max_steps=2",
                                "model.allow_preprocess_mismatch=true"],
                      tmp_path / "caffe", data_dir=data_dir)
    record = train(cfg)
    GlobalHydra.instance().clear()
    assert "preprocess=torchvision" in record["pretrained"]["preprocess_warning"]


def test_default_callbacks_skip_the_segmentation_checkpoints(tmp_path, data_dir, caplog):
    # model=vgg16_classifier without the experiment keeps callbacks=default, whose checkpoints
    # watch val/mean_iou (which a classifier does not log): the task drops them and says so.
    import logging

    cfg = compose_cfg("train", ["model=vgg16_classifier", *TINY[1:], "trainer.max_steps=2"],
                      tmp_path, data_dir=data_dir)
    assert "best" in cfg.callbacks
    with caplog.at_level(logging.INFO, logger="fcnlab.tasks.trainer"):
        record = pretrain(cfg)
    GlobalHydra.instance().clear()
    assert record["status"] == "finished" and record["iterations"] == 2
    assert caplog.text.count("ModelCheckpoint from the callbacks config is not used") == 2
    assert "the classifier is saved as vgg16_classifier.pt" in caplog.text
    assert not list(tmp_path.rglob("*.ckpt"))
    assert (tmp_path / "run" / "vgg16_classifier.pt").is_file()
