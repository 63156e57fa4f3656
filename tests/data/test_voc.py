"""VOC + SBD (.mat, SegmentationClassAug) on tiny trees in the real layouts; data=voc end to end."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from conftest import compose_cfg
from fcnlab.config import instantiate
from fcnlab.data import VOC_CLASSES, VOCDataModule
from fcnlab.data.toy import save_index_png, save_sbd_mat, write_aug, write_sbd, write_voc
from fcnlab.errors import ConfigError, DataError


@pytest.fixture
def tree(tmp_path) -> dict:
    voc = write_voc(tmp_path)
    sbd = write_sbd(tmp_path)  # sbd train holds 2008_000004, which is in VOC val
    write_aug(voc)
    return {"root": tmp_path, "voc": voc, "sbd": sbd}


def _dm(tree, **kwargs) -> VOCDataModule:
    voc = tree["voc"]
    return VOCDataModule(voc, sbd_root=tree["sbd"], aug_label_dir=voc / "SegmentationClassAug",
                         aug_list=voc / "ImageSets" / "Segmentation" / "train_aug.txt",
                         check_files=True, **kwargs)


def test_voc_labels_are_palette_indices_with_void(tree):
    dm = _dm(tree)
    assert dm.num_classes == 21 and dm.class_names == VOC_CLASSES
    dm.setup("fit")
    assert dm.datasets["train"].ids == ["2007_000001", "2007_000002", "2008_000003"]
    sample = dm.datasets["train"][0]
    expected = np.array(Image.open(tree["voc"] / "SegmentationClass" / "2007_000001.png"))
    assert torch.equal(sample["mask"], torch.from_numpy(expected).long())
    assert sample["mask"][0, 0] == 255 and sample["mask"].max() == 255
    batches = list(dm.val_dataloader())
    assert [b["id"] for b in batches] == [["2008_000004"], ["2009_000005"]]


def test_sbd_mat_and_aug_png_union_minus_val(tree):
    dm = _dm(tree, train_sets=["voc_train", "sbd_train", "sbd_val", "aug_train"])
    dm.setup("fit")
    train = dm.datasets["train"]
    # 2008_000004 is in sbd_train and VOC val: dropped from training
    assert train.ids == ["2007_000001", "2007_000002", "2008_000003", "2008_000010",
                         "2008_000011", "2008_000020", "2008_000021"]
    sbd = train[train.ids.index("2008_000010")]
    from scipy.io import loadmat
    mat = loadmat(tree["sbd"] / "cls" / "2008_000010.mat", squeeze_me=True,
                  struct_as_record=False)
    assert torch.equal(sbd["mask"], torch.from_numpy(mat["GTcls"].Segmentation.astype(np.int64)))
    aug = train[train.ids.index("2008_000021")]
    assert aug["mask"].shape == (20, 30) and int(aug["mask"].max()) == 255


def test_aug_list_of_plain_ids(tree):
    write_aug(tree["voc"], deeplab_lines=False)
    dm = _dm(tree, train_sets=["aug_train"])
    assert dm.build_samples("train")[0].label.name == "2008_000020.png"


def test_overlap_refused_and_named(tree):
    dm = _dm(tree, train_sets=["voc_train", "sbd_train"], exclude_val_from_train=False)
    with pytest.raises(ConfigError, match="share 1 images \\(2008_000004\\)"):
        dm.setup("fit")
    dm = _dm(tree, train_sets=["voc_trainval"], exclude_val_from_train=False)
    with pytest.raises(ConfigError, match="2008_000004, 2009_000005"):
        dm.setup("fit")


def test_user_list_file_seg11valid(tree):
    (tree["root"] / "seg11valid.txt").write_text("2008_000004\n")
    dm = _dm(tree, train_sets=["voc_trainval"], val_set=str(tree["root"] / "seg11valid.txt"))
    dm.setup("fit")
    assert dm.datasets["val"].ids == ["2008_000004"]
    assert "2008_000004" not in dm.datasets["train"].ids
    assert "2009_000005" in dm.datasets["train"].ids
    # a bare file name is also looked up in ImageSets/Segmentation
    (tree["voc"] / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("2009_000005\n")
    assert [s.id for s in _dm(tree, val_set="seg11valid.txt").build_samples("val")] == [
        "2009_000005"]


def test_batch_size_needs_crop_and_eval_batch_one(tree):
    with pytest.raises(ConfigError, match="differ in size.*batch_size 1.*augment.crop"):
        _dm(tree, batch_size=2)
    with pytest.raises(ConfigError, match="eval_batch_size 1"):
        _dm(tree, eval_batch_size=2)
    dm = _dm(tree, batch_size=2, augment={"crop": [16, 16], "hflip": True})
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16)


def test_sbd_needs_root_and_bad_mat(tree):
    with pytest.raises(ConfigError, match="sbd_root"):
        VOCDataModule(tree["voc"], train_sets=["sbd_train"])
    from scipy.io import savemat
    savemat(tree["sbd"] / "cls" / "2008_000010.mat", {"other": np.zeros((2, 2))})
    with pytest.raises(DataError, match="2008_000010.mat has no GTcls.Segmentation"):
        _dm(tree, train_sets=["sbd_train"]).setup("fit")
    save_sbd_mat(tree["sbd"] / "cls" / "2008_000010.mat", np.full((20, 30), 30, np.uint8))
    with pytest.raises(DataError, match="label values 30 outside"):
        _dm(tree, train_sets=["sbd_train"]).setup("fit")


def test_bad_files_stop_setup_or_are_skipped(tree, caplog):
    voc = tree["voc"]
    (voc / "JPEGImages" / "2007_000002.jpg").write_bytes(b"")
    save_index_png(voc / "SegmentationClass" / "2008_000003.png", np.full((5, 5), 40, np.uint8))
    with pytest.raises(DataError) as info:
        _dm(tree).setup("fit")
    message = str(info.value)
    assert "2 bad files" in message and "2007_000002.jpg" in message and "40" in message
    dm = _dm(tree, skip_bad_files=True)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert dm.datasets["train"].ids == ["2007_000001"]
    assert "2007_000002" in caplog.text and "2008_000003" in caplog.text


def test_missing_list_and_empty_split(tree):
    lists = tree["voc"] / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text("\n")
    with pytest.raises(DataError, match="val.txt .*is empty"):
        _dm(tree).setup("validate")
    (lists / "val.txt").unlink()
    with pytest.raises(DataError, match="cannot read list file .*val.txt"):
        _dm(tree).setup("validate")


def test_config_composes_and_trains_two_iterations(tree, tmp_path):
    overrides = ["data=voc", "model.net.width=0.0625", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
                 "trainer.enable_model_summary=false",
                 "callbacks=none",
                 # The paper's FCN (no BN): at batch 1 the toy's small pictures leave fc7 1x1, and
                 # the embedded recipe's BN needs more than one value per channel.
                 "deviations.batch_norm=false"]
    cfg = compose_cfg("train", overrides, tmp_path / "run", data_dir=tree["root"], debug=None)
    try:
        assert cfg.data.num_classes == 21 and cfg.data.datamodule.sbd_root is None
        assert Path(cfg.data.datamodule.aug_list) == (
            tree["voc"] / "ImageSets" / "Segmentation" / "train_aug.txt")
        assert isinstance(instantiate(cfg.data.datamodule), VOCDataModule)
        from fcnlab.tasks.train import train
        record = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    assert record["status"] == "finished" and record["iterations"] == 2
    assert record["evaluations"][-1]["split"] == "val"


def test_debug_fast_keys_on_real_data_explained(tree, tmp_path):
    cfg = compose_cfg("train", ["data=voc"], tmp_path / "run", data_dir=tree["root"])
    try:
        with pytest.raises(ConfigError, match="unknown keys .*image_size.*data=synthetic"):
            instantiate(cfg.data.datamodule)
    finally:
        GlobalHydra.instance().clear()
