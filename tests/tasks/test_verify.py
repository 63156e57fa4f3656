"""``python -m fcnlab.data verify``: every bad file at once, a summary, and the exit status."""

import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import CONF_DIR, ROOT
from fcnlab.data.toy import save_index_png, write_camvid, write_folder, write_voc
from fcnlab.data.verify import main


def _verify(capsys, *overrides):
    code = main(["verify", "--conf", str(CONF_DIR), *overrides])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_clean_voc_tree_exits_0_with_summary(tmp_path, capsys):
    write_voc(tmp_path)
    code, out = _verify(capsys, "data=voc", f"paths.data_dir={tmp_path}")
    assert code == 0, out
    assert "split train (voc_train): 3 images" in out and "split val (voc_val): 2 images" in out
    assert "aeroplane" in out and "void" in out and "no problems found" in out


def test_three_bad_files_all_listed_exit_1(tmp_path, capsys):
    voc = write_voc(tmp_path, train=("a1", "a2", "a3", "a4"), val=("b1", "b2"))
    jpg = voc / "JPEGImages" / "a1.jpg"
    jpg.write_bytes(jpg.read_bytes()[:100])  # truncated image
    label = voc / "SegmentationClass" / "a2.png"
    Image.open(label).convert("RGB").save(label)  # RGB label instead of palette indices
    (voc / "SegmentationClass" / "b2.png").unlink()  # missing label
    code, out = _verify(capsys, "data=voc", f"paths.data_dir={tmp_path}")
    assert code == 1, out
    assert "3 problems:" in out
    assert f"cannot read image {jpg}" in out
    assert f"mask {label} has mode 'RGB'" in out and "palette" in out
    assert f"mask file {voc / 'SegmentationClass' / 'b2.png'} is missing" in out
    assert "split train (voc_train): 4 images, 2 bad" in out


def test_overlap_reported_and_files_still_checked(tmp_path, capsys):
    voc = write_voc(tmp_path)
    (voc / "SegmentationClass" / "2007_000001.png").unlink()
    code, out = _verify(capsys, "data=voc", f"paths.data_dir={tmp_path}",
                        "data.datamodule.train_sets=[voc_trainval]",
                        "data.datamodule.exclude_val_from_train=false")
    assert code == 1 and "2 problems" in out, out
    assert "share 2 images (2008_000004, 2009_000005)" in out
    assert "2007_000001.png is missing" in out


def test_every_kind_of_bad_file_named(tmp_path, capsys):
    ids = [f"s{i}" for i in range(5)]
    root = write_folder(tmp_path / "data" / "folder", ids=ids,
                        splits={"train": ids, "val": ["s0"], "test": ["s0"]})
    (root / "images" / "s0.png").write_bytes(b"")  # zero-byte image
    save_index_png(root / "masks" / "s1.png", np.full((20, 30), 9, np.uint8))  # value 9 of 3
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(root / "images" / "s2.png")  # size
    (root / "splits" / "extra.txt").write_text("nope\n")  # list naming a missing image
    (root / "splits" / "test.txt").write_text("")  # empty split
    code, out = _verify(capsys, "data=folder", "data.num_classes=3",
                        f"paths.data_dir={tmp_path / 'data'}", "data.datamodule.val_split=extra")
    assert code == 1, out
    assert f"cannot read image {root / 'images' / 's0.png'}" in out
    assert "s1.png has label values 9 outside the valid range [0, 2]" in out
    assert "is 21x30 (HxW) but mask" in out and "is 20x30" in out
    assert f"image file {root / 'images' / 'nope.png'} is missing" in out
    assert "test.txt is empty" in out


def test_camvid_and_cli_entry_point(tmp_path):
    camvid = write_camvid(tmp_path)
    (camvid / "test" / "0001TP_test_0001.png").unlink()
    result = subprocess.run([sys.executable, "-m", "fcnlab.data", "verify", "data=camvid",
                             f"paths.data_dir={tmp_path}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{camvid / 'test.txt'} line 2" in result.stdout
    assert "Bicyclist" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "fcnlab.data", "verify", "data=nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "data=nope: no such option" in bad.stderr
