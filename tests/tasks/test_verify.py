"""``python verify.py data=…``: every bad file at once, a summary, and the exit status (0 all well,
1 bad files, 2 a configuration that cannot be built)."""


import numpy as np
import pytest
from conftest import compose_cfg, run_scripts
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from fcnlab.cli import run_task
from fcnlab.data.toy import save_index_png, write_camvid, write_folder, write_voc
from fcnlab.tasks.verify import BAD_CONFIG, BAD_FILES, verify


def _verify(capsys, tmp_path, *overrides):
    """Compose conf/verify.yaml as ``verify.py`` does and run the task as the script does:
    returns (exit status, stdout + stderr)."""
    cfg = compose_cfg("verify", list(overrides), tmp_path / "cfg", data_dir=tmp_path, debug=None)
    try:
        run_task(verify, cfg)
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        GlobalHydra.instance().clear()
    out = capsys.readouterr()
    return code, out.out + out.err


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_clean_voc_tree_exits_0_with_summary(tmp_path, capsys):
    write_voc(tmp_path)
    code, out = _verify(capsys, tmp_path, "data=voc")
    assert code == 0, out
    assert "split train (voc_train): 3 images" in out and "split val (voc_val): 2 images" in out
    assert "aeroplane" in out and "void" in out and "no problems found" in out
    assert not _error_lines(out)


def test_three_bad_files_all_listed_exit_1(tmp_path, capsys):
    voc = write_voc(tmp_path, train=("a1", "a2", "a3", "a4"), val=("b1", "b2"))
    jpg = voc / "JPEGImages" / "a1.jpg"
    jpg.write_bytes(jpg.read_bytes()[:100])  # truncated image
    label = voc / "SegmentationClass" / "a2.png"
    Image.open(label).convert("RGB").save(label)  # RGB label instead of palette indices
    (voc / "SegmentationClass" / "b2.png").unlink()  # missing label
    code, out = _verify(capsys, tmp_path, "data=voc")
    assert code == BAD_FILES == 1, out
    assert "3 problems:" in out
    assert f"cannot read image {jpg}" in out
    assert f"mask {label} has mode 'RGB'" in out and "palette" in out
    assert f"mask file {voc / 'SegmentationClass' / 'b2.png'} is missing" in out
    assert "split train (voc_train): 4 images, 2 bad" in out
    error = "error: data=voc: 3 problems in the files or lists (listed above)"
    assert _error_lines(out) == [error]


def test_overlap_reported_and_files_still_checked(tmp_path, capsys):
    voc = write_voc(tmp_path)
    (voc / "SegmentationClass" / "2007_000001.png").unlink()
    code, out = _verify(capsys, tmp_path, "data=voc",
                        "data.datamodule.train_sets=[voc_trainval]",
                        "data.datamodule.exclude_val_from_train=false")
    assert code == 1 and "2 problems" in out, out
    assert "share 2 images (2008_000004, 2009_000005)" in out
    assert "2007_000001.png is missing" in out


def test_every_kind_of_bad_file_named(tmp_path, capsys):
    ids = [f"s{i}" for i in range(5)]
    root = write_folder(tmp_path / "folder", ids=ids,
                        splits={"train": ids, "val": ["s0"], "test": ["s0"]})
    (root / "images" / "s0.png").write_bytes(b"")  # zero-byte image
    save_index_png(root / "masks" / "s1.png", np.full((20, 30), 9, np.uint8))  # value 9 of 3
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(root / "images" / "s2.png")  # size
    (root / "splits" / "extra.txt").write_text("nope\n")  # list naming a missing image
    (root / "splits" / "test.txt").write_text("")  # empty split
    code, out = _verify(capsys, tmp_path, "data=folder", "data.num_classes=3",
                        "data.datamodule.val_split=extra")
    assert code == 1, out
    assert f"cannot read image {root / 'images' / 's0.png'}" in out
    assert "s1.png has label values 9 outside the valid range [0, 2]" in out
    assert "is 21x30 (HxW) but mask" in out and "is 20x30" in out
    assert f"image file {root / 'images' / 'nope.png'} is missing" in out
    assert "test.txt is empty" in out


@pytest.mark.parametrize("overrides, expected", [
    # no folder at all: FolderDataModule cannot read classes.yaml
    (["data=folder"], "classes.yaml"),
    # a set the DataModule cannot build from the config: SBD's, with sbd_root null
    (["data=voc", "data.datamodule.train_sets=[sbd_train]"], "sbd_root"),
])
def test_config_that_cannot_be_built_exits_2_in_one_line(tmp_path, capsys, overrides, expected):
    code, out = _verify(capsys, tmp_path, *overrides)
    assert code == BAD_CONFIG == 2, out
    lines = _error_lines(out)
    assert len(lines) == 1 and expected in lines[0], out
    assert "split" not in out  # stopped before reading any file


def test_script_exit_status_and_one_line_errors(tmp_path):
    """The real entry, ``python verify.py``: bad files (1), an unknown data set (2), --help (0)."""
    camvid = write_camvid(tmp_path)
    (camvid / "test" / "0001TP_test_0001.png").unlink()
    runs = {
        "bad_files": ["data=camvid", f"paths.data_dir={tmp_path}"],
        "no_such_data": ["data=nope"],
        "help": ["--help"],
    }
    # cwd=tmp_path: verify.py finds conf/ next to itself, not in the working directory.
    done = run_scripts("verify.py", runs, tmp_path)
    code, out, err = done["bad_files"]
    assert code == 1, out + err
    assert f"{camvid / 'test.txt'} line 2" in out and "Bicyclist" in out
    assert _error_lines(err) == [err.strip()] and "problem" in err, err
    code, out, err = done["no_such_data"]
    assert code == 2 and err.strip().count("\n") == 0, err
    assert err.startswith("error: data=nope: no such option; expected one of camvid, folder"), err
    code, out, err = done["help"]
    assert code == 0, err
    assert "usage: python verify.py data=<name>" in out and "data: camvid, folder" in out
    assert [p.name for p in tmp_path.iterdir()] == [camvid.name], "verify wrote files"
