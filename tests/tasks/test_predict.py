"""predict(cfg): images of any size and mode -> label PNGs, overlays, classes.json, report.json.

A tiny FCN-8s is trained for 2 iterations (``debug=fast``), then segments a folder holding an
odd-sized RGB image, a grayscale, an RGBA, a 16-bit PNG and a corrupt file. Prediction runs
through Lightning's ``Trainer.predict`` and ``SegmentationModule.predict_step``; the labels are
the same at any ``batch_size``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.module import SegmentationModule
from fcnlab.tasks.predict import NothingWrittenError, plan_batches, predict, segment, to_rgb8
from fcnlab.tasks.train import train

SIZES = {"rgb": (37, 53), "gray": (41, 29), "rgba": (30, 45), "deep16": (33, 35)}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data_dir) -> Path:
    tmp = tmp_path_factory.mktemp("predict_train")
    cfg = compose_cfg("train", ["model=fcn8s", "trainer.max_steps=2",
                                "trainer.val_check_interval=2"], tmp, data_dir=data_dir)
    train(cfg)
    GlobalHydra.instance().clear()
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    h, w = SIZES["rgb"]
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / "rgb.png")
    h, w = SIZES["gray"]
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(folder / "gray.png")
    h, w = SIZES["rgba"]
    Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8)).save(folder / "rgba.png")
    h, w = SIZES["deep16"]
    Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).save(folder / "deep16.png")
    (folder / "corrupt.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("not an image: ignored\n")
    return folder


def _predict_cfg(tmp_path: Path, overrides: list[str]):
    return compose_cfg("predict", overrides, tmp_path, debug=None)


def test_predict_folder_of_odd_images(ckpt, images, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = _predict_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}"])
    report = predict(cfg)
    GlobalHydra.instance().clear()
    module, _ = SegmentationModule.from_checkpoint(ckpt)
    k = module.num_classes
    for stem, (h, w) in SIZES.items():
        labels = Image.open(out / f"{stem}.png")
        assert labels.mode == "P" and labels.size == (w, h), stem
        values = np.asarray(labels)
        assert values.shape == (h, w) and int(values.max()) < k, stem
        overlay = Image.open(out / f"{stem}_overlay.png")
        assert overlay.mode == "RGB" and overlay.size == (w, h), stem
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert sorted(Path(r["input"]).name for r in on_disk["written"]) == sorted(
        f"{s}.png" for s in SIZES)
    assert [Path(r["input"]).name for r in on_disk["failed"]] == ["corrupt.png"]
    assert "cannot read image" in on_disk["failed"][0]["error"]
    printed = capsys.readouterr().out
    assert "corrupt.png" in printed and "1 failed" in printed
    classes = json.loads((out / "classes.json").read_text())["classes"]
    assert [c["name"] for c in classes] == module.class_names
    assert all(len(c["color"]) == 3 for c in classes)
    # The label PNG's palette is the one in classes.json.
    palette = Image.open(out / "rgb.png").getpalette()[: 3 * k]
    assert palette == [v for c in classes for v in c["color"]]
    assert not (out / "notes.png").exists()


def test_predict_all_failed_is_an_error(ckpt, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(b"not a jpeg")
    cfg = _predict_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input={folder}",
                                  f"output={tmp_path / 'out'}"])
    with pytest.raises(NothingWrittenError, match="no image could be segmented"):
        predict(cfg)
    GlobalHydra.instance().clear()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["written"] == [] and len(report["failed"]) == 1


def test_predict_missing_input(ckpt, tmp_path):
    cfg = _predict_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match="does not exist"):
        predict(cfg)
    GlobalHydra.instance().clear()


def test_sixteen_bit_is_scaled_by_1_over_257():
    a = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    rgb = to_rgb8(Image.fromarray(a))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 1, 255, 128]


def test_minimum_size_is_padded_and_cropped_back():
    """A network with ``min_input_size`` (DeconvNet) sees a padded input; labels keep the size."""

    class MinSizeNet(torch.nn.Module):
        min_input_size = 16

        def forward(self, x):
            assert min(x.shape[-2:]) >= 16
            return torch.stack([x[:, 0], -x[:, 0]], 1)

    class Module(torch.nn.Module):
        preprocess, crf = "torchvision", None

        def __init__(self):
            super().__init__()
            self.net = MinSizeNet()

        def forward(self, x):
            return self.net(x)

    rgb = np.full((5, 9, 3), 255, np.uint8)
    labels = segment(Module(), rgb)
    assert labels.shape == (5, 9) and (labels == 0).all()


@pytest.fixture(scope="module")
def same_sizes(tmp_path_factory) -> Path:
    """Three pictures of one size, one of another, one corrupt: batch_size=2 makes a real batch."""
    folder = tmp_path_factory.mktemp("same_sizes")
    rng = np.random.default_rng(1)
    for name, (h, w) in {"a": (37, 53), "b": (37, 53), "c": (29, 41), "d": (37, 53)}.items():
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"{name}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG not really")
    return folder


def test_batch_size_does_not_change_the_labels(ckpt, same_sizes, tmp_path, monkeypatch):
    """predict runs through Trainer.predict; batch 2 writes the very files of batch 1."""
    batches = []
    original = SegmentationModule.predict_step

    def spy(self, batch, batch_idx, dataloader_idx=0):
        assert self.trainer is not None and not self.training  # called by Lightning, eval mode
        batches.append(None if batch["image"] is None else tuple(batch["image"].shape))
        return original(self, batch, batch_idx, dataloader_idx)

    monkeypatch.setattr(SegmentationModule, "predict_step", spy)
    reports = {}
    for batch_size in (1, 2):
        out = tmp_path / f"b{batch_size}"
        cfg = _predict_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input={same_sizes}",
                                      f"output={out}", f"batch_size={batch_size}"])
        reports[batch_size] = predict(cfg)
        GlobalHydra.instance().clear()
    # Files a, b, bad, c, d. Batch 1: five batches; batch 2: a+b, the unreadable file alone, c
    # (another size), d.
    assert batches[:5] == [(1, 3, 37, 53), (1, 3, 37, 53), None, (1, 3, 29, 41), (1, 3, 37, 53)]
    assert batches[5:] == [(2, 3, 37, 53), None, (1, 3, 29, 41), (1, 3, 37, 53)]
    for stem in "abcd":
        one = np.asarray(Image.open(tmp_path / "b1" / f"{stem}.png"))
        two = np.asarray(Image.open(tmp_path / "b2" / f"{stem}.png"))
        assert one.shape == two.shape and (one == two).all(), stem
        assert (tmp_path / "b2" / f"{stem}_overlay.png").read_bytes() == (
            tmp_path / "b1" / f"{stem}_overlay.png").read_bytes()
    # The report lists files in input order whatever order the batches ran in.
    for batch_size, report in reports.items():
        assert [Path(w["input"]).stem for w in report["written"]] == list("abcd"), batch_size
        assert [Path(f["input"]).name for f in report["failed"]] == ["bad.png"]


def test_plan_batches_groups_by_size_and_names_duplicates(tmp_path):
    sizes = {"x.png": (5, 6), "x.jpg": (5, 6), "y.png": (7, 6), "z.png": (5, 6)}
    for name, (h, w) in sizes.items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"nope")
    files = [tmp_path / n for n in ("x.png", "x.jpg", "y.png", "broken.png", "z.png")]
    batches, stems = plan_batches(files, batch_size=2)
    assert batches == [[0, 1], [2], [3], [4]]
    assert stems == ["x", "x_jpg", "y", None, "z"]
    assert plan_batches(files, batch_size=3)[0] == [[0, 1, 4], [2], [3]]


def test_predict_batch_size_must_be_positive(ckpt, images, tmp_path):
    cfg = _predict_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", "batch_size=0"])
    with pytest.raises(ConfigError, match="batch_size: expected an int >= 1, got 0"):
        predict(cfg)
    GlobalHydra.instance().clear()
