"""Median-frequency class weights (SegNet, docs/reference.md §3): by hand, CamVid order, cache."""

import json

import numpy as np
import pytest

from fcnlab.data import CamVidDataModule, FolderDataModule, median_frequency_weights
from fcnlab.data.class_weights import CACHE_FILE
from fcnlab.data.toy import save_index_png, write_camvid, write_folder
from fcnlab.errors import ConfigError

# The released SegNet CamVid weights, in class order (docs/reference.md §3).
CAMVID_WEIGHTS = [0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
                  6.2478, 7.3614]


def _toy_masks(tmp_path):
    """3 masks of 4x4 over 3 classes, with void.

    m0: class 0 x 8, class 1 x 8          (16 labelled px)
    m1: class 0 x 12, void x 4            (12 labelled px)
    m2: class 1 x 2, class 2 x 2, void x 12 (4 labelled px)
    freq0 = 20 / (16 + 12) = 5/7; freq1 = 10 / (16 + 4) = 1/2; freq2 = 2 / 4 = 1/2
    median = 1/2 -> weights 0.7, 1, 1
    """
    m0 = np.array([0] * 8 + [1] * 8, np.uint8).reshape(4, 4)
    m1 = np.array([0] * 12 + [255] * 4, np.uint8).reshape(4, 4)
    m2 = np.array([1] * 2 + [2] * 2 + [255] * 12, np.uint8).reshape(4, 4)
    return [save_index_png(tmp_path / f"m{i}.png", m) for i, m in enumerate((m0, m1, m2))]


def test_hand_computation(tmp_path):
    weights = median_frequency_weights(_toy_masks(tmp_path), 3)
    assert weights == pytest.approx([0.7, 1.0, 1.0])


def test_camvid_like_frequencies_give_the_published_order(tmp_path):
    # freq_c proportional to 1 / weight_c; every class in each of the two masks.
    pixels = np.rint(300 / np.array(CAMVID_WEIGHTS)).astype(int)  # 31 .. 2117 px
    label = np.repeat(np.arange(11, dtype=np.uint8), pixels)
    label = np.concatenate([label, np.full(-len(label) % 100, 11, np.uint8)]).reshape(-1, 100)
    paths = [save_index_png(tmp_path / f"l{i}.png", np.roll(label, i)) for i in range(2)]
    weights = median_frequency_weights(paths, 11, void_values=(11,))
    assert list(np.argsort(weights)) == list(np.argsort(CAMVID_WEIGHTS))
    # and the values are the published ones up to one scale factor (their median is Pavement)
    ratio = np.array(weights) / np.array(CAMVID_WEIGHTS)
    assert ratio == pytest.approx(np.full(11, ratio[4]), rel=0.02)


def test_cached_next_to_the_data_and_reused(tmp_path, monkeypatch):
    root = write_folder(tmp_path, ids=["a", "b", "c"], splits={"train": ["a", "b"],
                                                               "val": ["c"], "test": ["c"]})
    dm = FolderDataModule(root)
    first = dm.class_weights("median_freq")
    cache = json.loads((root / CACHE_FILE).read_text())
    (key,) = cache
    assert key.startswith("train-") and cache[key]["weights"] == first
    cache[key]["weights"] = [9.0, 9.0, 9.0]  # prove the second call reads the cache
    (root / CACHE_FILE).write_text(json.dumps(cache))
    assert FolderDataModule(root).class_weights("median_freq") == [9.0, 9.0, 9.0]
    (root / "splits" / "train.txt").write_text("a\n")  # another id list: another entry
    assert FolderDataModule(root).class_weights("median_freq") != [9.0, 9.0, 9.0]
    assert len(json.loads((root / CACHE_FILE).read_text())) == 2


def test_class_weights_kinds(tmp_path):
    camvid = write_camvid(tmp_path)
    dm = CamVidDataModule(camvid)
    assert dm.class_weights(None) is None
    weights = dm.class_weights("median_freq")  # 11 (void) is excluded
    assert len(weights) == 11 and all(w > 0 for w in weights)
    assert (camvid / CACHE_FILE).is_file()
    assert dm.class_weights(CAMVID_WEIGHTS) == CAMVID_WEIGHTS
    for bad in ("inverse", [1.0] * 10, [1.0] * 10 + [0.0], [1.0] * 10 + ["x"], 3):
        with pytest.raises(ConfigError, match="11 positive numbers"):
            dm.class_weights(bad)
