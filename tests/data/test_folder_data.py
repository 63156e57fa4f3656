"""data=folder: the user's own images/ + masks/ + classes.yaml, with or without splits/."""

import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import compose_cfg
from fcnlab.config import instantiate
from fcnlab.data import FolderDataModule
from fcnlab.data.toy import write_folder
from fcnlab.errors import ConfigError, DataError

IDS = [f"img{i}" for i in range(6)]


def test_val_fraction_derives_deterministic_splits(tmp_path):
    root = write_folder(tmp_path, ids=IDS)
    dm = FolderDataModule(root, batch_size=2, val_fraction=0.34, seed=3, check_files=True)
    assert dm.split_names()["test"] is None
    dm.setup()
    train, val = dm.datasets["train"].ids, dm.datasets["val"].ids
    assert len(val) == 2 and sorted(train + val) == IDS and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    again = FolderDataModule(root, val_fraction=0.34, seed=3)
    assert again.derived_splits() == {"train": train, "val": val}
    other = FolderDataModule(root, val_fraction=0.34, seed=4).derived_splits()
    assert len(other["val"]) == 2
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 20, 30)
    with pytest.raises(DataError, match="no test split"):
        dm.test_dataloader()


def test_splits_folder_wins_and_missing_splits_explained(tmp_path):
    root = write_folder(tmp_path, ids=IDS, splits={"train": IDS[:4], "val": IDS[4:],
                                                   "test": IDS[4:]})
    dm = FolderDataModule(root, val_fraction=0.5)
    dm.setup()
    assert dm.datasets["val"].ids == IDS[4:] and dm.datasets["test"].ids == IDS[4:]
    root2 = write_folder(tmp_path / "nosplits", ids=IDS)
    with pytest.raises(DataError, match="no splits/ folder.*val_fraction"):
        FolderDataModule(root2).setup("fit")
    for bad in (0, 1.0, "x", True):
        with pytest.raises(ConfigError, match="val_fraction"):
            FolderDataModule(root2, val_fraction=bad)


def test_config_composes(tmp_path):
    root = write_folder(tmp_path / "data" / "folder", ids=IDS)
    cfg = compose_cfg("train", ["data=folder", "data.num_classes=3",
                                "data.datamodule.val_fraction=0.5"], tmp_path, debug=None)
    try:
        dm = instantiate(cfg.data.datamodule)
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(dm, FolderDataModule) and dm.root == root and dm.num_classes == 3
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3
