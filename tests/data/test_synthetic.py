"""The synthetic dataset: layout, determinism, idempotency, and that it is a real task."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fcnlab.data import synthetic
from fcnlab.data.synthetic import (SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, generate_synthetic,
                                   render_sample, void_band)
from fcnlab.errors import DataError

SMALL = dict(image_size=(96, 128), num_train=40, num_val=20, num_test=3, seed=0)
TINY = dict(image_size=(24, 40), num_train=3, num_val=2, num_test=2, seed=0)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "small", **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _split(root: Path, split: str):
    ids = (root / "splits" / f"{split}.txt").read_text().split()
    images = np.stack([np.asarray(Image.open(root / "images" / f"{i}.png")) for i in ids])
    masks = np.stack([np.asarray(Image.open(root / "masks" / f"{i}.png")) for i in ids])
    return images, masks


def test_layout_and_class_file(small):
    for split, n in (("train", 40), ("val", 20), ("test", 3)):
        ids = (small / "splits" / f"{split}.txt").read_text().split()
        assert ids == [f"{split}_{i:05d}" for i in range(n)]
    image = Image.open(small / "images" / "train_00000.png")
    mask = Image.open(small / "masks" / "train_00000.png")
    assert image.mode == "RGB" and image.size == (128, 96)  # PIL size is (W, H)
    assert mask.mode == "P" and mask.size == (128, 96)
    assert mask.getpalette() == SYNTHETIC_PALETTE
    classes = yaml.safe_load((small / "classes.yaml").read_text())
    assert classes["classes"] == list(SYNTHETIC_CLASSES) and len(SYNTHETIC_CLASSES) == 11
    assert classes["ignore_index"] == 255
    assert classes["palette"][:2] == [[0, 0, 0], [128, 0, 0]]  # VOC colour map
    assert SYNTHETIC_PALETTE[255 * 3:] == [224, 224, 192]  # VOC's void colour
    meta = json.loads((small / "meta.json").read_text())
    assert meta["params"]["seed"] == 0 and meta["params"]["image_size"] == [96, 128]


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = generate_synthetic(tmp_path / "a", **TINY)
    b = generate_synthetic(tmp_path / "b", **TINY)
    c = generate_synthetic(tmp_path / "c", **{**TINY, "seed": 1})
    assert _files(a) == _files(b)
    assert all(_files(a)[k] != _files(c)[k] for k in _files(a) if k.startswith("images/"))


def test_splits_do_not_depend_on_each_other(tmp_path):
    a = generate_synthetic(tmp_path / "a", **TINY)
    b = generate_synthetic(tmp_path / "b", **{**TINY, "num_train": 5, "num_test": 1})
    fa, fb = _files(a), _files(b)
    assert all(fa[k] == fb[k] for k in fa if "val_" in k or "train_0000" in k)


def test_second_call_rewrites_nothing(tmp_path):
    root = generate_synthetic(tmp_path / "d", **TINY)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_synthetic(root, **TINY) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_other_parameters_refused_unless_overwrite(tmp_path):
    root = generate_synthetic(tmp_path / "d", **TINY)
    with pytest.raises(DataError, match="other parameters"):
        generate_synthetic(root, **{**TINY, "seed": 3})
    generate_synthetic(root, **{**TINY, "seed": 3}, overwrite=True)
    assert json.loads((root / "meta.json").read_text())["params"]["seed"] == 3
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="not a synthetic dataset"):
            generate_synthetic(tmp_path / "user", **TINY, overwrite=overwrite)
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return render_sample(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "d", **TINY)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor a temporary folder


def test_concurrent_generation_does_not_crash(tmp_path):
    errors = []

    def run():
        try:
            generate_synthetic(tmp_path / "d", **TINY)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert generate_synthetic(tmp_path / "d", **TINY) == tmp_path / "d"


def test_every_class_present_background_dominant_and_imbalanced(small):
    _, masks = _split(small, "train")
    counts = np.bincount(masks.ravel(), minlength=256)
    share = counts[:11] / counts[:11].sum()
    assert (counts[:11] > 0).all(), f"missing classes: {np.flatnonzero(counts[:11] == 0)}"
    assert set(np.flatnonzero(counts)) <= set(range(11)) | {255}
    assert share[0] > 0.6  # background is the majority
    objects = share[1:]
    assert objects.min() < np.median(objects) / 5  # dots / poles are rare in pixels
    assert share[SYNTHETIC_CLASSES.index("dot")] < 0.01


def test_void_band_lies_on_class_borders(small):
    _, masks = _split(small, "train")
    assert 0.01 < (masks == 255).mean() < 0.2
    # Any two neighbouring labelled pixels (4- or 8-connected) carry the same class.
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = masks[:, max(dy, 0):, max(dx, 0):masks.shape[2] + min(dx, 0)]
        b = masks[:, :masks.shape[1] - dy, max(-dx, 0):masks.shape[2] - max(dx, 0)]
        both = (a != 255) & (b != 255)
        assert (a[both] == b[both]).all()
    # And void is exactly where the 3x3 neighbourhood of the clean label holds two classes.
    rng = np.random.default_rng(5)
    _, label, mask = render_sample(rng, (40, 56), void_width=1)
    padded = np.pad(label, 1, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    border = windows.max(axis=(2, 3)) != windows.min(axis=(2, 3))
    assert np.array_equal(mask == 255, border)
    assert np.array_equal(mask[~border], label[~border])
    assert np.array_equal(void_band(label, 0), label)


def test_colour_alone_does_not_solve_it(small):
    """A per-colour lookup table learned on train (class-balanced, so it maximises mean accuracy
    rather than predicting background everywhere) stays far from solving val."""
    def codes(images):  # 4 bits per channel -> 4096 colour bins
        q = images.reshape(-1, 3).astype(np.int64) >> 4
        return (q[:, 0] << 8) | (q[:, 1] << 4) | q[:, 2]

    images, masks = _split(small, "train")
    keep = masks.ravel() != 255
    table = np.zeros((4096, 11))
    np.add.at(table, (codes(images)[keep], masks.ravel()[keep]), 1)
    lut = (table / np.maximum(table.sum(0), 1)).argmax(1)
    images, masks = _split(small, "val")
    keep = masks.ravel() != 255
    pred, truth = lut[codes(images)[keep]], masks.ravel()[keep]
    mean_acc = np.mean([(pred[truth == c] == c).mean() for c in np.unique(truth)])
    assert mean_acc < 0.4


def test_cli(tmp_path, capsys):
    synthetic.main([str(tmp_path / "cli"), "--image-size", "24", "40", "--num-train", "2",
                    "--num-val", "1", "--num-test", "1", "--seed", "2"])
    assert "ready" in capsys.readouterr().out
    assert (tmp_path / "cli" / "masks" / "train_00001.png").is_file()
