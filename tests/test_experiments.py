"""The table experiments end to end at toy size: one multirun, then the report.

fcn_table: the staged chain (FCN-32s -> 16s -> 8s) inside one multirun command. segnet_table:
2 models x 2 budgets with the report's cells checked against the runs' results.json.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ["debug=fast", "trainer.val_check_interval=2"]


def _sweep(tmp_path: Path, data_dir: Path, args: list[str]) -> None:
    subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *args, *TOY,
                    f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}"],
                   check=True, cwd=ROOT, capture_output=True, timeout=600)


def _report(sweep: Path) -> list[dict]:
    subprocess.run([sys.executable, "-m", "fcnlab.report", str(sweep), "--no-predictions"],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    with open(sweep / "report" / "table.csv") as f:
        return list(csv.DictReader(f))


def _record(sweep: Path, model: str) -> dict:
    return json.loads((sweep / model / "results.json").read_text())


def test_fcn_table_staged_chain_in_one_multirun(tmp_path, data_dir):
    args = ["experiment=fcn_table", "scale=embedded", "trainer.max_steps=2"]
    _sweep(tmp_path, data_dir, args)
    sweep = tmp_path / "tables" / "fcn_table-embedded"
    # The first job pretrains the classifier (with the recipe's lr, on the trainer's schedule
    # under debug=fast); FCN-32s-fixed fixes it and FCN-32s starts from it.
    pre = _record(sweep, "vgg16_classifier")
    assert pre["task"] == "pretrain" and pre["status"] == "finished"
    assert pre["iterations"] == 2 and pre["pretrain"]["lr"] == pytest.approx(1e-4)
    sha = pre["classifier"]["sha256"]
    for model in ("fcn32s_fixed", "fcn32s"):
        assert _record(sweep, model)["pretrained"]["sha256"] == sha
    assert _record(sweep, "fcn16s")["init_from"].endswith("fcn32s/checkpoints/last.ckpt")
    assert _record(sweep, "fcn8s")["init_from"].endswith("fcn16s/checkpoints/last.ckpt")
    assert _record(sweep, "fcn16s")["init_copied"] > 0 and _record(sweep, "fcn8s")["init_copied"]
    rows = _report(sweep)
    for model in ("fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s"):
        final = _record(sweep, model)["evaluations"][-1]
        (row,) = [r for r in rows if r.get("model") == model]
        assert float(row["mean_iou"]) == pytest.approx(100 * final["mean_iou"])
    assert not [r for r in rows if r.get("model") == "vgg16_classifier"]  # not a table row
    md = (sweep / "report" / "table.md").read_text()
    assert "Features: the pretrained VGG16 classifier" in md and sha[:12] in md
    assert "| 2 | 8 | 64x64 crops |" in md  # its own schedule, batch and crops in ## Runs

    # Re-running the command finishes the sweep: the classifier is not trained again (the
    # FCN-32s runs were initialised from this one), and its file stays the same.
    classifier = sweep / "vgg16_classifier" / "vgg16_classifier.pt"
    stamp = classifier.stat().st_mtime_ns
    _sweep(tmp_path, data_dir, args)
    assert classifier.stat().st_mtime_ns == stamp
    assert _record(sweep, "vgg16_classifier")["classifier"]["sha256"] == sha


def test_segnet_table_budgets_reach_the_report(tmp_path, data_dir):
    _sweep(tmp_path, data_dir, ["experiment=segnet_table", "scale=embedded",
                                "model=segnet,fcn_bilinear",
                                "budgets=[2,4]", "trainer.max_steps=6"])
    sweep = tmp_path / "tables" / "segnet_table-embedded"
    rows = _report(sweep)
    for model in ("segnet", "fcn_bilinear"):
        record = _record(sweep, model)
        by_iter = {e["iteration"]: e for e in record["evaluations"] if not e.get("crf")}
        assert sorted(by_iter) == [2, 4, 6]
        for budget in (2, 4):
            (row,) = [r for r in rows if r.get("model") == model
                      and r.get("column") == f"budget {budget}"]
            assert float(row["mean_iou"]) == pytest.approx(100 * by_iter[budget]["mean_iou"])
            assert float(row["bf"]) == pytest.approx(100 * by_iter[budget]["bf"])


@pytest.mark.parametrize("experiment,needs", [("fcn_table", "data=voc optim=sgd_heavy"),
                                              ("segnet_table", "data=camvid")])
def test_paper_presets_say_which_data_and_solver_they_need(tmp_path, experiment, needs):
    """A paper preset cannot choose its data set itself (it is loaded through an interpolated
    default); without it on the command line the run stops at once, naming the overrides."""
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), f"experiment={experiment}",
                          "scale=paper", f"paths.log_dir={tmp_path}",
                          f"paths.data_dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert f"add {needs} to the command" in out.stderr + out.stdout
    assert not list(tmp_path.rglob("results.json"))  # nothing started
