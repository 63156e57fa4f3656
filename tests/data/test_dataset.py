"""The folder dataset, preprocessing and the DataModules, on tiny folders in the real layout."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from fcnlab.data import (SYNTHETIC_CLASSES, FolderDataModule, SegmentationFolderDataset,
                         SyntheticDataModule)
from fcnlab.data.synthetic import SYNTHETIC_PALETTE
from fcnlab.data.transforms import CAFFE_MEAN_BGR, denormalize, preprocess
from fcnlab.errors import ConfigError, DataError

H, W = 6, 10


def _write_sample(root: Path, sample_id: str, image=None, mask=None):
    rng = np.random.default_rng(len(sample_id))
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8) if image is None else image
    mask = rng.integers(0, 3, (H, W), dtype=np.uint8) if mask is None else mask
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{sample_id}.png")
    png = Image.fromarray(mask)
    png.putpalette(SYNTHETIC_PALETTE)
    png.save(root / "masks" / f"{sample_id}.png")


def _write_split(root: Path, split: str, ids):
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three classes, 4 train / 2 val / 2 test images of 6x10 pixels."""
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        ids = [f"{split}{i}" for i in range(n)]
        for i in ids:
            _write_sample(tmp_path, i)
        _write_split(tmp_path, split, ids)
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump(
        {"classes": ["bg", "a", "b"], "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]],
         "ignore_index": 255}))
    return tmp_path


def _first(root, split="train", **kwargs):
    return SegmentationFolderDataset(root, split, num_classes=3, **kwargs)[0]


def test_sample_shapes_dtypes_and_values(folder):
    mask = np.zeros((H, W), np.uint8)
    mask[1, 2], mask[3, 4] = 2, 255
    _write_sample(folder, "train0", mask=mask)
    dataset = SegmentationFolderDataset(folder, "train", num_classes=3)
    sample = dataset[0]
    assert len(dataset) == 4 and sample["id"] == "train0"
    assert sample["image"].shape == (3, H, W) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (H, W) and sample["mask"].dtype == torch.int64
    assert torch.equal(sample["mask"], torch.from_numpy(mask).long())


def test_caffe_and_torchvision_preprocessing_exact(folder):
    image = np.zeros((H, W, 3), np.uint8)
    image[2, 3] = (10, 20, 30)  # R, G, B
    _write_sample(folder, "train0", image=image)
    x = _first(folder, preprocess="caffe")["image"][:, 2, 3]
    b, g, r = CAFFE_MEAN_BGR
    expected = torch.tensor([30 - b, 20 - g, 10 - r])
    assert torch.allclose(x, expected, atol=1e-4)  # B, G, R order, 0-255 scale
    x = _first(folder, preprocess="torchvision")["image"][:, 2, 3]
    expected = torch.tensor([(10 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224,
                             (30 / 255 - 0.406) / 0.225])
    assert torch.allclose(x, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["caffe", "torchvision"])
def test_denormalize_inverts_preprocess(mode):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(denormalize(preprocess(image, mode), mode), image)


def test_unknown_preprocess_mode_lists_valid_ones(folder):
    with pytest.raises(ConfigError, match="caffe.*torchvision"):
        SegmentationFolderDataset(folder, "train", num_classes=3, preprocess="imagenet")


def test_grayscale_and_rgba_images_become_rgb(folder):
    Image.fromarray(np.full((H, W), 50, np.uint8)).save(folder / "images" / "train0.png")
    red = _first(folder, preprocess="caffe")["image"][2]  # channel 2 is R in Caffe order
    assert torch.allclose(red, torch.tensor(50 - 122.67892))
    Image.fromarray(np.full((H, W, 4), 50, np.uint8)).save(folder / "images" / "train0.png")
    assert _first(folder)["image"].shape == (3, H, W)


def test_mode_l_mask_accepted(folder):
    Image.fromarray(np.ones((H, W), np.uint8)).save(folder / "masks" / "train0.png")
    assert (_first(folder)["mask"] == 1).all()


def test_joint_transform_applied_before_preprocessing(folder):
    def flip(image, mask):
        return {"image": image[:, ::-1], "mask": mask[:, ::-1]}

    plain, flipped = _first(folder), _first(folder, transform=flip)
    assert torch.equal(flipped["mask"], plain["mask"].flip(-1))
    assert torch.equal(flipped["image"], plain["image"].flip(-1))


def test_truncated_and_empty_images(folder):
    path = folder / "images" / "train0.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"cannot read image {path}"):
        _first(folder)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"cannot read image {path}"):
        _first(folder)


def test_rgb_mask_refused_with_palette_hint(folder):
    path = folder / "masks" / "train0.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DataError, match="palette") as info:
        _first(folder)
    assert str(path) in str(info.value) and "quantize" in str(info.value)


def test_out_of_range_labels_named(folder):
    mask = np.zeros((H, W), np.uint8)
    mask[0, :3] = (7, 3, 254)
    _write_sample(folder, "train0", mask=mask)
    with pytest.raises(DataError) as info:
        _first(folder)
    message = str(info.value)
    assert "3, 7, 254" in message and "[0, 2]" in message and "train0.png" in message


def test_size_mismatch_names_both_sizes(folder):
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(folder / "images" / "train0.png")
    with pytest.raises(DataError, match=f"{H + 1}x{W}.*{H}x{W}") as info:
        _first(folder)
    assert "train0.png" in str(info.value)


def test_missing_files_and_bad_splits(folder):
    (folder / "masks" / "train1.png").unlink()
    with pytest.raises(DataError, match=str(folder / "masks" / "train1.png")):
        SegmentationFolderDataset(folder, "train", num_classes=3)
    (folder / "images" / "val1.png").unlink()
    with pytest.raises(DataError, match=str(folder / "images" / "val1.png")):
        SegmentationFolderDataset(folder, "val", num_classes=3)
    _write_split(folder, "test", [])
    with pytest.raises(DataError, match="test.txt is empty"):
        SegmentationFolderDataset(folder, "test", num_classes=3)
    with pytest.raises(DataError, match="extra.txt"):
        SegmentationFolderDataset(folder, "extra", num_classes=3)


def test_jpeg_images_found(folder):
    image = Image.open(folder / "images" / "train0.png")
    (folder / "images" / "train0.png").unlink()
    image.save(folder / "images" / "train0.jpg")
    assert _first(folder)["image"].shape == (3, H, W)


def test_folder_datamodule(folder):
    dm = FolderDataModule(folder, batch_size=3, eval_batch_size=2)
    assert dm.num_classes == 3 and dm.class_names == ("bg", "a", "b")
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and batches[0]["image"].shape == (3, 3, H, W)  # drop_last
    assert len(batches[0]["id"]) == 3 and isinstance(batches[0]["id"][0], str)
    order = [b["id"] for b in FolderDataModule(folder, batch_size=1, seed=4).train_dataloader()]
    again = [b["id"] for b in FolderDataModule(folder, batch_size=1, seed=4).train_dataloader()]
    assert order == again  # seeded shuffling
    assert [b["id"] for b in dm.val_dataloader()] == [["val0", "val1"]]
    assert [b["id"] for b in dm.test_dataloader()] == [["test0", "test1"]]
    with pytest.raises(DataError, match="fewer than batch_size=5"):
        FolderDataModule(folder, batch_size=5).train_dataloader()
    with pytest.raises(ConfigError, match="ignore_index"):
        FolderDataModule(folder, ignore_index=11).num_classes
    (folder / "classes.yaml").unlink()
    with pytest.raises(DataError, match="classes.yaml"):
        FolderDataModule(folder).num_classes


def test_synthetic_datamodule(tmp_path):
    dm = SyntheticDataModule(tmp_path, image_size=OmegaConf.create([24, 40]), num_train=4,
                             num_val=2, num_test=1, batch_size=2)
    assert dm.num_classes == 11 and dm.class_names == SYNTHETIC_CLASSES
    assert not dm.root.exists()
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 40) and batch["mask"].shape == (2, 24, 40)
    assert dm.root.parent == tmp_path and "24x40" in dm.root.name
    other = SyntheticDataModule(tmp_path, image_size=(24, 40), num_train=4, num_val=2,
                                num_test=1, seed=1)
    assert other.root != dm.root


@pytest.mark.parametrize("bad", ["abc", [24], [24, "x"], [0, 40], (24.5, 40), None])
def test_synthetic_image_size_validated(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"data.image_size: expected two positive ints \[H, W\]"):
        SyntheticDataModule(tmp_path, image_size=bad)
