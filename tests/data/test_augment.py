"""Joint image/mask augmentation: alignment, void padding, seeded determinism, per-worker seeds."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fcnlab.data import FolderDataModule, SegmentationDataset, build_augment
from fcnlab.data.dataset import Sample
from fcnlab.data.toy import write_folder
from fcnlab.errors import ConfigError

COLOURS = np.array([[10, 200, 30], [200, 20, 90], [40, 60, 220], [250, 250, 5]], np.uint8)


def _blocks(h=40, w=56, cell=8, seed=0):
    """An image of flat 8x8 blocks in 4 colours and the mask 'index of the block colour'."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, 4, (h // cell, w // cell)).repeat(cell, 0).repeat(cell, 1)
    return COLOURS[index], index.astype(np.uint8)


def _interior(image):
    """Pixels whose 3x3 neighbourhood has one colour (no interpolation blend can reach them)."""
    same = np.ones(image.shape[:2], bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= (np.roll(image, (dy, dx), (0, 1)) == image).all(-1)
    same[[0, -1]] = same[:, [0, -1]] = False
    return same


def test_none_means_off():
    assert build_augment(None) is None and build_augment({}) is None
    assert build_augment({"hflip": False}) is None


@pytest.mark.parametrize("seed", range(4))
def test_image_and_mask_stay_aligned(seed):
    aug = build_augment({"scale": [0.5, 2.0], "crop": [48, 48], "hflip": True}, seed=seed)
    image, mask = _blocks(seed=seed)
    for _ in range(5):
        out = aug(image=image, mask=mask)
        img, msk = out["image"], out["mask"]
        assert img.shape[:2] == msk.shape == (48, 48) and msk.dtype == np.uint8
        inside = _interior(img) & (msk != 255)
        assert inside.sum() > 50
        colour_of = (img[inside][:, None, :] == COLOURS[None]).all(-1)
        assert colour_of.any(1).all()  # an interior pixel keeps an exact block colour...
        assert np.array_equal(colour_of.argmax(1), msk[inside])  # ...and its mask says which
        assert set(np.unique(msk)) <= {0, 1, 2, 3, 255}  # nearest: no blended labels


def test_padding_is_void_in_masks_and_at_bottom_right():
    aug = build_augment({"crop": [30, 40], "pad_image": 7}, seed=0)
    image, mask = np.full((20, 25, 3), 100, np.uint8), np.ones((20, 25), np.uint8)
    out = aug(image=image, mask=mask)
    assert out["mask"].shape == (30, 40)
    assert (out["mask"][:20, :25] == 1).all() and (out["mask"][20:] == 255).all()
    assert (out["mask"][:, 25:] == 255).all() and (out["image"][20:] == 7).all()


def test_same_seed_same_output_other_seed_other():
    image, mask = _blocks()
    cfg = {"scale": [0.5, 2.0], "crop": [32, 32], "hflip": True}
    runs = [[build_augment(cfg, seed=s)(image=image, mask=mask)["mask"] for _ in range(3)]
            for s in (1, 1, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown keys \\['rotate'\\]"):
        build_augment({"rotate": 10})
    with pytest.raises(ConfigError, match="data.augment.crop"):
        build_augment({"crop": [0, 10]})
    with pytest.raises(ConfigError, match="data.augment.scale"):
        build_augment({"scale": [2.0, 0.5]})


def _ids_and_masks(dm):
    return [(b["id"], b["mask"].clone()) for b in dm.train_dataloader()]


def test_datamodule_runs_repeat_with_workers_and_eval_is_untouched(tmp_path):
    ids = [f"i{k}" for k in range(6)]
    root = write_folder(tmp_path, ids=ids, splits={"train": ids, "val": ids[:2], "test": ids[:2]})
    cfg = {"scale": [0.5, 1.5], "crop": [12, 12], "hflip": True}
    runs = [_ids_and_masks(FolderDataModule(root, batch_size=2, augment=cfg, seed=5,
                                            num_workers=2)) for _ in range(2)]
    for (ids_a, a), (ids_b, b) in zip(*runs):
        assert ids_a == ids_b and torch.equal(a, b)
    # the two workers do not replay one stream: four copies of one image get four crops
    same = [Sample(f"copy{k}", root / "images" / "i0.png", root / "masks" / "i0.png", "test")
            for k in range(4)]
    dataset = SegmentationDataset(same, num_classes=3, transform=build_augment(
        {"crop": [12, 12]}, seed=5))
    loader = DataLoader(dataset, batch_size=1, num_workers=2,
                        generator=torch.Generator().manual_seed(0))
    masks = [b["mask"] for b in loader]  # worker 0: copy0, copy2; worker 1: copy1, copy3
    assert masks[0].shape == (1, 12, 12)
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[2], masks[3])
    val = FolderDataModule(root, batch_size=2, augment=cfg, eval_batch_size=1)
    assert next(iter(val.val_dataloader()))["mask"].shape == (1, 20, 30)  # original resolution
