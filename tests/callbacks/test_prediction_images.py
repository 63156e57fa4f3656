"""PredictionImages: every evaluation writes the prediction on a few fixed validation images.

A real ``debug=fast`` run (4 iterations, the callback added by an override) checks the files
against a forward pass of the final weights; a small random network driven through the hook with a
stand-in trainer checks what a 4-iteration run cannot (a prediction that is not one flat class,
the train mode restored, a network whose output is not the label's size, the sanity check).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import compose_cfg
from fcnlab.callbacks.prediction_images import INDEX_FILE, PredictionImages
from fcnlab.config import instantiate
from fcnlab.data.transforms import denormalize
from fcnlab.errors import ConfigError
from fcnlab.module import SegmentationModule
from fcnlab.tasks.train import train
from fcnlab.tasks.trainer import instantiate_all

ADD_CALLBACK = [  # `++`: works whether or not conf/callbacks/default.yaml lists it already
    "++callbacks.prediction_images._target_=fcnlab.callbacks.prediction_images.PredictionImages",
    "++callbacks.prediction_images.num_images=3",
]


def _png(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def _val_dataset(cfg):
    return instantiate(cfg.data.datamodule).val_dataloader().dataset


def test_a_training_run_writes_the_final_weights_prediction(tmp_path, data_dir):
    cfg = compose_cfg("train", ADD_CALLBACK, tmp_path, data_dir=data_dir)
    record = train(cfg)
    folder = Path(cfg.paths.output_dir) / "predictions"
    index = json.loads((folder / INDEX_FILE).read_text())
    final = [e for e in record["evaluations"] if e["split"] == "val"][-1]
    assert index["iteration"] == final["iteration"] == cfg.trainer.max_steps == 4
    assert index["model"] == "fcn8s" and index["void"]["value"] == 255
    dataset = _val_dataset(cfg)
    assert [e["id"] for e in index["images"]] == [dataset[k]["id"] for k in range(3)]
    assert not list(folder.glob(".*tmp"))  # every temporary file was renamed

    module, _ = SegmentationModule.from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints"
                                                   / "last.ckpt")
    module.eval()
    assert index["classes"] == module.class_names
    voids = 0
    for k, entry in enumerate(index["images"]):
        item = dataset[k]
        with torch.no_grad():
            expected = module(item["image"][None]).argmax(1)[0].numpy()
        mode, pred = _png(folder / entry["prediction"])
        assert mode == "P" and np.array_equal(pred, expected)
        mode, truth = _png(folder / entry["truth"])
        assert mode == "P" and np.array_equal(truth, item["mask"].numpy())  # 255 kept as 255
        voids += int((truth == 255).sum())
        _, rgb = _png(folder / entry["image"])
        assert np.array_equal(rgb, denormalize(item["image"], cfg.data.datamodule.preprocess))
    assert voids > 0  # the synthetic masks have void borders: the check above saw some


class TinyNet(nn.Module):
    """A stand-in segmentation module: random 1x1 scores, optionally at half the resolution."""

    def __init__(self, num_classes: int, half: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.score = nn.Conv2d(3, num_classes, 1)
        nn.init.normal_(self.score.weight, std=1.0)
        self.half = half
        self.ignore_index = 255
        self.class_names = [f"c{i}" for i in range(num_classes)]
        self.hparams = {"name": "tiny"}
        self.grad_seen: list[bool] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_seen.append(torch.is_grad_enabled())
        return self.score(x[..., ::2, ::2] if self.half else x)


@pytest.fixture
def stand_in(tmp_path, data_dir):
    cfg = compose_cfg("train", [], tmp_path, data_dir=data_dir)
    datamodule = instantiate(cfg.data.datamodule)

    def trainer(**kw):
        return SimpleNamespace(**{"sanity_checking": False, "global_rank": 0, "global_step": 7,
                                  "datamodule": datamodule, "default_root_dir": str(tmp_path),
                                  **kw})
    return trainer, datamodule, tmp_path / "predictions"


@pytest.mark.parametrize("training", [True, False])
def test_labels_are_the_argmax_and_the_mode_is_restored(stand_in, training):
    make_trainer, datamodule, folder = stand_in
    net = TinyNet(datamodule.num_classes).train(training)
    callback = PredictionImages(num_images=2)
    callback.on_validation_end(make_trainer(), net)
    assert net.training is training and net.grad_seen == [False, False]
    index = json.loads((folder / INDEX_FILE).read_text())
    assert index["iteration"] == 7 and len(index["images"]) == 2
    dataset = datamodule.val_dataloader().dataset
    for k, entry in enumerate(index["images"]):
        with torch.no_grad():
            expected = net.eval()(dataset[k]["image"][None]).argmax(1)[0].numpy()
        _, pred = _png(folder / entry["prediction"])
        assert np.array_equal(pred, expected) and len(np.unique(pred)) > 1


def test_an_output_of_another_size_is_skipped_with_a_warning(stand_in, caplog):
    make_trainer, datamodule, folder = stand_in
    net = TinyNet(datamodule.num_classes, half=True)
    with caplog.at_level(logging.WARNING, logger="fcnlab.callbacks.prediction_images"):
        PredictionImages(num_images=2).on_validation_end(make_trainer(), net)
    assert "(20, 28), the label (40, 56)" in caplog.text
    index = json.loads((folder / INDEX_FILE).read_text())
    assert [e["prediction"] for e in index["images"]] == [None, None]
    assert not list(folder.glob("*_prediction.png"))
    assert (folder / index["images"][0]["truth"]).is_file()  # image and truth still shown


@pytest.mark.parametrize("state", [{"sanity_checking": True}, {"global_rank": 1},
                                   {"datamodule": None}])
def test_nothing_is_written_in_the_sanity_check_off_rank_0_or_without_data(stand_in, state):
    make_trainer, datamodule, folder = stand_in
    net = TinyNet(datamodule.num_classes)
    PredictionImages().on_validation_end(make_trainer(**state), net)
    assert not folder.exists() and net.grad_seen == []


def test_the_config_file_builds_the_callback(tmp_path):
    cfg = compose_cfg("train", ["callbacks=prediction_images"], tmp_path)
    assert list(cfg.callbacks) == ["prediction_images"]  # the file stem is its key
    (callback,) = instantiate_all(cfg.callbacks)
    assert isinstance(callback, PredictionImages) and callback.num_images == 4
    assert callback.dirpath == Path(cfg.paths.output_dir) / "predictions"
    with pytest.raises(ConfigError, match="num_images: expected an integer >= 1, got 0"):
        PredictionImages(num_images=0)
