"""fcnlab.report: records -> the papers' tables, plots and the prediction grid.

The fake sweep is written by hand (no training): records shaped like a real ``debug=fast`` run's
``results.json``, with budgets [2, 4] and evaluations at 2, 4, 6, 8, plus a failed run and a job
folder that never wrote its record. One real end-to-end test trains a 2-model ``-m`` sweep with
``debug=fast`` in a subprocess and reports on it.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fcnlab.report.paper_tables import FCN_TABLE2, SEGNET_TABLE3, TABLES
from fcnlab.report import build_report, main

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["background", "disk", "box"]


def _evaluation(iteration: int, pixel_acc: float, mean_acc: float, mean_iou: float,
                fw_iou: float, bf: float | None = None, crf: bool | None = None) -> dict:
    e = {"split": "val", "iteration": iteration, "pixel_acc": pixel_acc, "mean_acc": mean_acc,
         "mean_iou": mean_iou, "fw_iou": fw_iou,
         "iou": {"background": 0.9, "disk": mean_iou, "box": None},
         "majority_class_mean_iou": 0.3, "majority_class_pixel_acc": 0.8,
         "confmat": [[90, 5, 0], [3, 7, 0], [0, 0, 0]]}
    if bf is not None:
        e["bf"] = bf
    if crf is not None:
        e["crf"] = crf
    return e


def _record(folder: Path, model: str, evaluations: list[dict], *, status: str = "finished",
            budgets: list[int] | None = None, error: str | None = None) -> dict:
    record = {
        "task": "train", "model": model, "data": "synthetic", "output_dir": str(folder),
        "parameters": {"learnable": 1000, "fixed": 10, "total": 1010},
        "pretrained": None, "init_from": None, "init_copied": None, "status": status,
        "command": f"train.py -m model={model} debug=fast",
        "commit": {"sha": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "versions": {"python": "3.11.7", "torch": "2.13.0+cpu"},
        "machine": {"platform": "Linux", "processor": "x86_64", "cpu_count": 2,
                    "torch_threads": 2},
        "evaluations": evaluations, "wall_time_s": 12.5,
        "config": {
            "seed": 0, "budgets": budgets or [],
            "loss": {"reduction": "mean", "ignore_index": 255},
            "metrics": {"mean_over": "gt_present"},
            "data": {"name": "synthetic", "num_classes": 3, "datamodule": {
                "_target_": "fcnlab.data.SyntheticDataModule", "image_size": [40, 56],
                "batch_size": 4, "preprocess": "torchvision"}},
            "model": {"name": model, "pretrained": None, "init_from": None,
                      "net": {"width": 0.0625, "batch_norm": True}},
            "optim": {"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True,
                                    "lr": 0.001, "weight_decay": 0.0}, "scheduler": None},
            "trainer": {"max_steps": 8, "val_check_interval": 2, "devices": 1},
            "callbacks": {"model_checkpoint": {}},
        },
    }
    if status == "finished":
        record["iterations"] = 8
        record["checkpoints"] = {"last": str(folder / "checkpoints" / "last.ckpt"), "best": None}
    if error:
        record["error"] = error
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "results.json").write_text(json.dumps(record, indent=2))
    return record


SEGNET_EVALS = [  # budgets [2, 4]; the best after 4 by mean IU is iteration 6, not 8
    _evaluation(2, 0.712345, 0.301234, 0.51, 0.600001, bf=0.2011),  # best overall: not after 4
    _evaluation(4, 0.801234, 0.402345, 0.30, 0.650002, bf=0.2512),
    _evaluation(6, 0.823456, 0.434567, 0.41234, 0.700003, bf=0.3013),
    _evaluation(8, 0.834567, 0.445678, 0.35, 0.710004, bf=0.3114),
]


@pytest.fixture
def fake_sweep(tmp_path) -> Path:
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00_000000-1"
    sweep.mkdir(parents=True)
    _record(sweep / "0_model=segnet", "segnet", SEGNET_EVALS, budgets=[2, 4])
    deeplab = [_evaluation(i, 0.7 + i / 100, 0.3 + i / 100, 0.2 + i / 100, 0.6) for i in
               (2, 4, 6, 8)]  # no "bf": BF shows "–" with a note
    deeplab.append(_evaluation(8, 0.791111, 0.381111, 0.292222, 0.61, bf=0.25, crf=True))
    _record(sweep / "1_model=deeplab_largefov", "deeplab_largefov", deeplab, budgets=[2, 4])
    _record(sweep / "2_model=fcn_bilinear", "fcn_bilinear",
            [_evaluation(2, 0.6, 0.2, 0.1, 0.5, bf=0.1)], status="failed", budgets=[2, 4],
            error="RuntimeError: CUDA out of memory")
    crashed = sweep / "3_model=deconvnet"
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / ".hydra" / "config.yaml").write_text("model:\n  name: deconvnet\n")
    (crashed / "train.log").write_text("[INFO] start\nValueError: input too small for fc6\n")
    _record(sweep / "4_model=fcn8s", "fcn8s", [_evaluation(2, 0.5, 0.2, 0.1, 0.4),
                                               _evaluation(8, 0.876543, 0.234567, 0.123456,
                                                           0.765432)])
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - model=segnet,deeplab_largefov,fcn_bilinear,"
        "deconvnet,fcn8s,fcn_learnt_deconv\n    - debug=fast\n")
    return sweep


def _md_row(markdown: str, first: str, second: str | None = None) -> list[str]:
    """The cells of the first Markdown table row whose first (and second) cell match."""
    for line in markdown.splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == first and (second is None or cells[1] == second):
            return cells
    raise AssertionError(f"no row {first!r} {second!r} in\n{markdown}")


def _row_after(markdown: str, first: str) -> list[str]:
    """The row just below ``first`` (the paper's row under ours in the SegNet table)."""
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ")]
    for i, line in enumerate(lines):
        if line.startswith(f"| {first} |"):
            return [c.strip() for c in lines[i + 1].strip().strip("|").split(" | ")]
    raise AssertionError(first)


def _gcmb(e: dict | None) -> str:
    return " / ".join("–" if e.get(m) is None else f"{100 * e[m]:.2f}"
                      for m in ("pixel_acc", "mean_acc", "mean_iou", "bf"))


def test_paper_tables_hold_reference_numbers():
    assert FCN_TABLE2.rows["fcn8s"].scores == dict(pixel_acc=90.3, mean_acc=75.9, mean_iou=62.7,
                                                   fw_iou=83.2)
    segnet = SEGNET_TABLE3.rows["segnet"]
    assert segnet.budgets[80_000]["mean_iou"] == 57.18 and segnet.max_iter == 140_000
    assert SEGNET_TABLE3.rows["deeplab_largefov_crf"].budgets[40_000] is None
    assert SEGNET_TABLE3.rows["deconvnet"].best["bf"] == 52.23
    for table in TABLES.values():
        assert "Table" in table.source


def test_report_on_fake_sweep(fake_sweep, capsys):
    out = fake_sweep / "report"
    assert main([str(fake_sweep), "--no-predictions"]) == 0
    md = (out / "table.md").read_text()
    assert capsys.readouterr().out.startswith(md.rstrip("\n"))  # the Markdown goes to stdout

    # SegNet: budget columns at iteration == budget, then the best after 4 (iteration 6).
    row = _md_row(md, "SegNet", "ours")
    assert row[2] == "finished"
    assert row[3] == "71.23 / 30.12 / 51.00 / 20.11" == _gcmb(SEGNET_EVALS[0])
    assert row[4] == _gcmb(SEGNET_EVALS[1])
    assert row[5] == "82.35 / 43.46 / 41.23 / 30.13" == _gcmb(SEGNET_EVALS[2])
    assert row[6] == "6"
    # The paper's row beside ours.
    assert _row_after(md, "SegNet") == ["", "paper", "", "88.81 / 59.93 / 50.02 / 35.78",
                                        "89.68 / 69.82 / 57.18 / 42.08",
                                        "90.40 / 71.20 / 60.10 / 46.84", "140K"]
    # Missing BF -> "–" and a note.
    row = _md_row(md, "DeepLab-LargeFOV", "ours")
    assert row[3] == "72.00 / 32.00 / 22.00 / –"
    assert row[5] == "78.00 / 38.00 / 28.00 / –" and row[6] == "8"
    assert "no 'bf'" in md
    # The CRF row: only the last column, budgets "not computed" as in the paper.
    row = _md_row(md, "DeepLab-LargeFOV-denseCRF", "ours")
    assert row[3:] == ["not computed", "not computed", "79.11 / 38.11 / 29.22 / 25.00", "8"]
    # A failed run is a row, its error in a note; a job without results.json too.
    row = _md_row(md, "FCN", "ours")
    assert row[2].startswith("failed [")
    assert "RuntimeError: CUDA out of memory" in md
    assert row[3] == "60.00 / 20.00 / 10.00 / 10.00"
    row = _md_row(md, "DeconvNet", "ours")
    assert row[2].startswith("failed [")
    assert "no results.json" in md and "ValueError: input too small for fc6" in md
    # Asked for by multirun.yaml, never started.
    assert _md_row(md, "FCN (learnt deconv)", "ours")[2].startswith("not started")
    assert "fcn_learnt_deconv" in md

    # FCN table (auto: both tables, since fcn8s is present), 1 decimal as the paper.
    row = _md_row(md, "FCN-8s")
    assert row[1:] == ["finished", "8", "87.7 (90.3)", "23.5 (75.9)", "12.3 (62.7)",
                       "76.5 (83.2)"]
    assert _md_row(md, "FCN-32s")[1] == "not in this sweep"
    assert "65.5" in md  # the heavy reference note

    # Protocol differences read from the records.
    assert "## Protocol differences" in md
    assert "`synthetic`" in md and "`0.0625`" in md and "Adam" in md and "0123456789" in md

    # CSV: full precision, percent, paper columns beside.
    rows = list(csv.DictReader((out / "table.csv").open()))
    seg = {r["column"]: r for r in rows if r["network"] == "SegNet"}
    assert set(seg) == {"budget 2", "budget 4", "best after 4"}
    best = seg["best after 4"]
    assert best["iteration"] == "6" and best["paper_iteration"] == "140000"
    assert float(best["mean_iou"]) == pytest.approx(41.234)
    assert float(best["bf"]) == pytest.approx(30.13)
    assert float(best["paper_mean_iou"]) == 60.10
    assert float(seg["budget 2"]["paper_pixel_acc"]) == 88.81
    fcn8s = next(r for r in rows if r["network"] == "FCN-8s")
    assert float(fcn8s["pixel_acc"]) == pytest.approx(87.6543)
    assert float(fcn8s["paper_pixel_acc"]) == 90.3
    statuses = {r["network"]: r["status"] for r in rows}
    assert statuses["DeconvNet"] == "failed" and statuses["FCN"] == "failed"
    assert statuses["FCN (learnt deconv)"] == "not started"

    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert plots == {"pixel_acc.png", "mean_acc.png", "mean_iou.png", "fw_iou.png", "bf.png"}


def test_report_without_budgets_and_only_one_table(fake_sweep, tmp_path):
    sweep = tmp_path / "nobudget"
    _record(sweep / "0", "segnet", SEGNET_EVALS)
    result = build_report(sweep, table="segnet", out=tmp_path / "out", predictions=False)
    md = result["markdown"]
    assert "no `budgets`" in md
    row = _md_row(md, "SegNet", "ours")
    assert row[3:] == [_gcmb(SEGNET_EVALS[-1]), "8"]  # the final evaluation
    assert "FCN, CVPR 2015" not in md


def test_report_missing_checkpoint_is_noted(fake_sweep, tmp_path):
    result = build_report(fake_sweep, out=tmp_path / "r", num_images=2)
    assert result["predictions"] is None
    assert any("no checkpoint" in n for n in result["prediction_notes"])


def test_report_rejects_an_empty_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no job folders" in capsys.readouterr().err


def test_report_end_to_end_on_a_real_sweep(tmp_path):
    """A real 2-model -m sweep (debug=fast), then the report: cells equal the records."""
    subprocess.run(
        [sys.executable, "train.py", "-m", "model=fcn32s,fcn8s", "debug=fast",
         f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"],
        cwd=ROOT, check=True, capture_output=True, timeout=120)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    done = subprocess.run([sys.executable, "-m", "fcnlab.report", str(sweep)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    md = (sweep / "report" / "table.md").read_text()
    assert md.rstrip("\n") in done.stdout
    for model, label in (("fcn32s", "FCN-32s"), ("fcn8s", "FCN-8s")):
        (results,) = sweep.glob(f"*model={model}/results.json")
        record = json.loads(results.read_text())
        final = [e for e in record["evaluations"] if e["split"] == "val"][-1]
        paper = FCN_TABLE2.rows[model].scores
        row = _md_row(md, label)
        assert row[1:3] == ["finished", str(final["iteration"])]
        assert row[3:] == [f"{100 * final[m]:.1f} ({paper[m]:.1f})"
                           for m in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou")]
        (csv_row,) = [r for r in csv.DictReader((sweep / "report" / "table.csv").open())
                      if r["model"] == model]
        assert float(csv_row["mean_iou"]) == pytest.approx(100 * final["mean_iou"])
    assert (sweep / "report" / "predictions.png").stat().st_size > 0
    assert (sweep / "report" / "plots" / "mean_iou.png").is_file()
