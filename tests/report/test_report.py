"""fcnlab.report: records -> the papers' tables, plots and the prediction grid.

The fake sweep is written by hand (no training): records shaped like a real ``debug=fast`` run's
``results.json``, with budgets [2, 4] and evaluations at 2, 4, 6, 8, plus a failed run and a job
folder that never wrote its record; prediction images are written by hand in the format of
``fcnlab.callbacks.prediction_images``. One real sweep (2 models, ``debug=fast``, the
prediction_images callback added) is trained once in a subprocess; the report on it must match the
records and must build no network: the network, module and data module constructors are patched
to raise, and a subprocess checks that torch is never imported.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnlab.report.paper_tables import FCN_TABLE2, SEGNET_TABLE3, TABLES
from fcnlab.report import build_report, main

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["background", "disk", "box"]
PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0]] + [[224, 224, 192]] * 253  # 255: void
ADD_CALLBACK = "++callbacks.prediction_images._target_=" \
    "fcnlab.callbacks.prediction_images.PredictionImages"


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
            budgets: list[int] | None = None, error: str | None = None, seed: int = 0,
            init_from: str | None = None) -> dict:
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
            "seed": seed, "budgets": budgets or [],
            "loss": {"reduction": "mean", "ignore_index": 255},
            "metrics": {"mean_over": "gt_present"},
            "data": {"name": "synthetic", "num_classes": 3, "datamodule": {
                "_target_": "fcnlab.data.SyntheticDataModule", "image_size": [40, 56],
                "batch_size": 4, "preprocess": "torchvision"}},
            "model": {"name": model, "pretrained": None, "init_from": init_from,
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

    # SegNet: budget columns at iteration == budget, then the best after 4 (iteration 6); one
    # run, so n = 1 and each value alone.
    row = _md_row(md, "SegNet", "ours")
    assert row[2:4] == ["finished", "1"]
    assert row[4] == "71.23 / 30.12 / 51.00 / 20.11" == _gcmb(SEGNET_EVALS[0])
    assert row[5] == _gcmb(SEGNET_EVALS[1])
    assert row[6] == "82.35 / 43.46 / 41.23 / 30.13" == _gcmb(SEGNET_EVALS[2])
    assert row[7] == "6"
    assert "n=1, no spread" in md
    # The paper's row beside ours.
    assert _row_after(md, "SegNet") == ["", "paper", "", "", "88.81 / 59.93 / 50.02 / 35.78",
                                        "89.68 / 69.82 / 57.18 / 42.08",
                                        "90.40 / 71.20 / 60.10 / 46.84", "140K"]
    # Missing BF -> "–" and a note.
    row = _md_row(md, "DeepLab-LargeFOV", "ours")
    assert row[4] == "72.00 / 32.00 / 22.00 / –"
    assert row[6] == "78.00 / 38.00 / 28.00 / –" and row[7] == "8"
    assert "no 'bf'" in md
    # The CRF row: only the last column, budgets "not computed" as in the paper.
    row = _md_row(md, "DeepLab-LargeFOV-denseCRF", "ours")
    assert row[4:] == ["not computed", "not computed", "79.11 / 38.11 / 29.22 / 25.00", "8"]
    # A failed run is a row, its error in a note, its partial values shown as such; a job
    # without results.json too.
    row = _md_row(md, "FCN", "ours")
    assert row[2].startswith("failed [") and row[3].startswith("1 partial [")
    assert "RuntimeError: CUDA out of memory" in md
    assert row[4] == "60.00 / 20.00 / 10.00 / 10.00"
    row = _md_row(md, "DeconvNet", "ours")
    assert row[2].startswith("failed [")
    assert "no results.json" in md and "ValueError: input too small for fc6" in md
    # Asked for by multirun.yaml, never started.
    assert _md_row(md, "FCN (learnt deconv)", "ours")[2].startswith("not started")
    assert "fcn_learnt_deconv" in md

    # FCN table (auto: both tables, since fcn8s is present), 1 decimal as the paper.
    row = _md_row(md, "FCN-8s")
    assert row[1:] == ["finished", "1", "8", "87.7 (90.3)", "23.5 (75.9)", "12.3 (62.7)",
                       "76.5 (83.2)"]
    assert _md_row(md, "FCN-32s")[1] == "not in this sweep"
    assert "65.5" in md  # the heavy reference note

    # Protocol differences read from the records.
    assert "## Protocol differences" in md
    assert "`synthetic`" in md and "`0.0625`" in md and "Adam" in md and "0123456789" in md

    # CSV: full precision, percent, paper columns beside.
    rows = list(csv.DictReader((out / "table.csv").open()))
    seg = {r["column"]: r for r in rows if r["network"] == "SegNet" and r["kind"] == "group"}
    assert set(seg) == {"budget 2", "budget 4", "best after 4"}
    best = seg["best after 4"]
    assert (best["n"], best["left_out"], best["mean_iou_std"], best["group"]) == ("1", "0", "",
                                                                                   "SegNet")
    (run_row,) = [r for r in rows if r["kind"] == "run" and r["column"] == "best after 4"
                  and r["network"] == "SegNet"]
    assert run_row["run"] == "0_model=segnet" and run_row["group"] == "SegNet"
    assert float(run_row["mean_iou"]) == pytest.approx(41.234)
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
    assert row[4:] == [_gcmb(SEGNET_EVALS[-1]), "8"]  # the final evaluation
    assert "FCN, CVPR 2015" not in md


def test_report_averages_the_seeds_of_a_network(tmp_path):
    """``<sweep>/<model>/seed<k>/`` (the seed sweeps' layout) beside ``<sweep>/<model>/`` (one
    seed): records that differ only in their seed, and in the paths named after it, are one row
    of mean ± sample std with n; a run with another setting is a row of its own, labelled by it;
    a failed seed is left out of the mean and counted. These jobs have no overrides.yaml, so
    their recorded configs are compared."""
    sweep = tmp_path / "sweep"

    def stage(k: int) -> str:  # FCN-16s of seed k starts from FCN-32s of seed k
        return str(sweep / "fcn32s" / f"seed{k}" / "checkpoints" / "last.ckpt")

    miou = [0.20, 0.25, 0.27]
    for k, v in enumerate(miou):
        _record(sweep / "fcn16s" / f"seed{k}", "fcn16s", [_evaluation(8, 0.8 + k / 100, 0.3, v,
                                                                      0.7)],
                seed=k, init_from=stage(k))
    _record(sweep / "fcn16s" / "seed3", "fcn16s", [_evaluation(4, 0.9, 0.9, 0.9, 0.9)],
            status="failed", seed=3, init_from=stage(3), error="RuntimeError: planted")
    other = _record(sweep / "fcn16s-lr" / "seed0", "fcn16s", [_evaluation(8, 0.8, 0.3, 0.5, 0.7)],
                    init_from=stage(0))
    other["config"]["optim"]["optimizer"]["lr"] = 0.01
    (sweep / "fcn16s-lr" / "seed0" / "results.json").write_text(json.dumps(other))
    _record(sweep / "fcn32s", "fcn32s", [_evaluation(8, 0.7, 0.2, 0.15, 0.6)])
    result = build_report(sweep, table="fcn", out=tmp_path / "r", predictions=False)
    md = result["markdown"]

    pct = 100 * np.array(miou)
    row = _md_row(md, "FCN-16s (optim.optimizer.lr=0.001)")
    assert row[1].startswith("3 finished, 1 failed [") and row[2].startswith("3 [")
    assert row[3] == "8"
    assert row[6] == f"{pct.mean():.1f} ± {pct.std(ddof=1):.1f} (62.4)" == "24.0 ± 3.6 (62.4)"
    assert row[4] == "81.0 ± 1.0 (90.0)"  # pixel acc 80, 81, 82; seed 3's 90 left out
    assert "1 of 4 runs left out of the mean (not finished): fcn16s/seed3" in md
    assert "RuntimeError: planted" in md
    assert _md_row(md, "FCN-16s (optim.optimizer.lr=0.01)")[1:3] == ["finished", "1"]
    assert _md_row(md, "FCN-32s")[1:4] == ["finished", "1", "8"]
    assert "n=1, no spread" in md

    rows = list(csv.DictReader((tmp_path / "r" / "table.csv").open()))
    (group,) = [r for r in rows if r["kind"] == "group"
                and r["group"] == "FCN-16s (optim.optimizer.lr=0.001)"]
    assert (group["n"], group["left_out"], group["run"]) == ("3", "1", "")
    assert float(group["mean_iou"]) == pytest.approx(pct.mean())
    assert float(group["mean_iou_std"]) == pytest.approx(pct.std(ddof=1))
    assert group["network"] == "FCN-16s" and group["status"] == "3 finished, 1 failed"
    members = [r for r in rows if r["kind"] == "run" and r["group"] == group["group"]]
    assert [r["run"] for r in members] == [f"fcn16s/seed{k}" for k in range(4)]
    assert [float(r["mean_iou"]) for r in members[:3]] == pytest.approx(list(pct))
    assert members[3]["status"] == "failed" and float(members[3]["mean_iou"]) == 90.0


def _label_png(labels: np.ndarray, path: Path) -> None:
    im = Image.fromarray(labels.astype(np.uint8))
    im.putpalette([v for rgb in PALETTE for v in rgb])
    im.save(path)


def _write_predictions(folder: Path, ids: list[str], iteration: int = 8,
                       size: tuple[int, int] = (10, 14), seed: int = 0,
                       skipped: tuple[int, ...] = ()) -> None:
    """``<run>/predictions/`` as fcnlab.callbacks.prediction_images writes it."""
    rng = np.random.default_rng(seed)
    out = folder / "predictions"
    out.mkdir()
    images = []
    for k, sample in enumerate(ids):
        names = {kind: f"{k:02d}_{kind}.png" for kind in ("image", "truth", "prediction")}
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(out / names["image"])
        truth = rng.integers(0, 3, size)
        truth[0] = 255  # a void row
        _label_png(truth, out / names["truth"])
        if k in skipped:
            names["prediction"] = None
        else:
            _label_png(rng.integers(0, 3, size), out / names["prediction"])
        images.append({"id": sample, "size": list(size), **names})
    (out / "index.json").write_text(json.dumps({
        "split": "val", "iteration": iteration, "model": folder.name, "classes": CLASSES,
        "palette": PALETTE[:3], "void": {"value": 255, "color": PALETTE[255]},
        "images": images}))


def test_report_missing_prediction_images_are_noted(fake_sweep, tmp_path):
    stale = tmp_path / "r" / "predictions.png"
    stale.parent.mkdir()
    stale.write_bytes(b"an earlier report's grid")
    result = build_report(fake_sweep, out=tmp_path / "r", num_images=2)
    assert result["predictions"] is None and not stale.exists()
    notes = result["prediction_notes"]
    assert "0_model=segnet: no prediction images; not shown" in notes
    assert "no run wrote prediction images: predictions.png not written" in notes
    assert "predictions.png not written." in result["markdown"]


def test_report_tiles_the_images_the_runs_wrote(fake_sweep, tmp_path):
    ids = [f"val_{i:05d}" for i in range(4)]
    # The FCN table comes first, so fcn8s's images and ground truth head the grid.
    _write_predictions(fake_sweep / "4_model=fcn8s", ids, iteration=6)
    _write_predictions(fake_sweep / "0_model=segnet", ids, seed=1)
    _write_predictions(fake_sweep / "1_model=deeplab_largefov", ids, seed=2, skipped=(1,))
    _write_predictions(fake_sweep / "2_model=fcn_bilinear", ids[::-1], iteration=2)
    out = tmp_path / "r"
    assert main([str(fake_sweep), "--out", str(out), "--images", "2"]) == 0
    md = (out / "table.md").read_text()
    assert "`predictions.png`: up to the first 2 val images" in md
    assert "1_model=deeplab_largefov: no prediction for val_00001 (its output is not the " \
        "label's size)" in md
    assert "2_model=fcn_bilinear: its val images (val_00003, val_00002) differ from " \
        "4_model=fcn8s's (val_00000, val_00001); not shown" in md
    assert "4_model=fcn8s: the images show iteration 6, its last val evaluation is at 8" in md
    assert "0_model=segnet:" not in md.split("## Predictions")[1]  # shown, nothing to say
    # Rows are the --images 2 images, columns image | truth | fcn8s | segnet | deeplab:
    # figsize (2.4 * 5, 2.0 * 2 + 0.6) inches at 100 dpi.
    with Image.open(out / "predictions.png") as im:
        assert im.size == (1200, 460)
    assert main([str(fake_sweep), "--out", str(out), "--no-predictions"]) == 0
    assert "## Predictions" not in (out / "table.md").read_text()


def test_report_rejects_a_bad_image_count(fake_sweep, capsys):
    with pytest.raises(SystemExit):
        main([str(fake_sweep), "--images", "0"])
    assert "--images: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_report_rejects_an_empty_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no job folders" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory, data_dir) -> Path:
    """A real 2-model -m sweep (debug=fast) whose runs write their prediction images."""
    logs = tmp_path_factory.mktemp("logs")
    subprocess.run(
        [sys.executable, "train.py", "-m", "model=fcn32s,fcn8s", "debug=fast", ADD_CALLBACK,
         f"paths.log_dir={logs}", f"paths.data_dir={data_dir}"],
        cwd=ROOT, check=True, capture_output=True, timeout=300)
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    return sweep


def test_report_end_to_end_on_a_real_sweep(real_sweep):
    """The report on a real sweep: cells equal the records, the grid shows every run."""
    sweep = real_sweep
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
        assert row[1:4] == ["finished", "1", str(final["iteration"])]
        assert row[4:] == [f"{100 * final[m]:.1f} ({paper[m]:.1f})"
                           for m in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou")]
        (csv_row,) = [r for r in csv.DictReader((sweep / "report" / "table.csv").open())
                      if r["model"] == model and r["kind"] == "run"]
        assert float(csv_row["mean_iou"]) == pytest.approx(100 * final["mean_iou"])
        index = json.loads((results.parent / "predictions" / "index.json").read_text())
        assert index["iteration"] == final["iteration"]  # the final weights' prediction
    assert (sweep / "report" / "predictions.png").stat().st_size > 0
    assert "## Predictions" in md and "not shown" not in md
    assert (sweep / "report" / "plots" / "mean_iou.png").is_file()


class NetworkBuilt(RuntimeError):
    """The report built a network, a Lightning module or a data module."""


def _builders() -> list[type]:
    from fcnlab.data.camvid import CamVidDataModule
    from fcnlab.data.datamodule import (FolderDataModule, SegmentationDataModule,
                                        SyntheticDataModule)
    from fcnlab.data.voc import VOCDataModule
    from fcnlab.models import FCN, VGG16, DeconvNet, DeepLabLargeFOV, SegNet, VGG16Classifier
    from fcnlab.module import SegmentationModule

    return [FCN, SegNet, DeconvNet, DeepLabLargeFOV, VGG16, VGG16Classifier, SegmentationModule,
            SegmentationDataModule, FolderDataModule, SyntheticDataModule, VOCDataModule,
            CamVidDataModule]


def _refuse_builders(monkeypatch) -> list[type]:
    """Make every network, module and data module constructor raise NetworkBuilt."""
    def refuse(self, *args, **kwargs):
        raise NetworkBuilt(f"the report built a {type(self).__name__}")

    builders = _builders()
    for cls in builders:
        monkeypatch.setattr(cls, "__init__", refuse)
    return builders


def test_report_builds_no_network(real_sweep, monkeypatch, tmp_path):
    assert main([str(real_sweep), "--out", str(tmp_path / "plain")]) == 0
    _refuse_builders(monkeypatch)
    assert main([str(real_sweep), "--out", str(tmp_path / "guarded")]) == 0
    assert (tmp_path / "guarded" / "predictions.png").stat().st_size > 0
    for name in ("table.md", "table.csv"):
        assert ((tmp_path / "guarded" / name).read_text()
                == (tmp_path / "plain" / name).read_text())


def test_the_guard_catches_a_report_that_builds_a_network(real_sweep, monkeypatch, tmp_path):
    """The planted failure: the old report's first step, loading checkpoints.last, is refused."""
    from fcnlab.module import SegmentationModule
    from fcnlab.report import predictions

    for cls in _refuse_builders(monkeypatch):
        with pytest.raises(NetworkBuilt, match=cls.__name__):
            cls()
    read_index = predictions.read_index

    def read_index_after_loading_the_checkpoint(run):
        SegmentationModule.from_checkpoint(run.folder / "checkpoints" / "last.ckpt")
        return read_index(run)

    monkeypatch.setattr(predictions, "read_index", read_index_after_loading_the_checkpoint)
    with pytest.raises(NetworkBuilt, match="SegmentationModule"):
        build_report(real_sweep, out=tmp_path / "planted")


def test_report_never_imports_torch(real_sweep, tmp_path):
    code = ("import runpy, sys\n"
            "sys.argv = ['fcnlab.report', sys.argv[1], '--out', sys.argv[2]]\n"
            "try:\n"
            "    runpy.run_module('fcnlab.report', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('imported:', [m for m in ('torch', 'lightning', 'fcnlab.models', "
            "'fcnlab.module', 'fcnlab.data') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code, str(real_sweep), str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout
    assert (tmp_path / "r" / "predictions.png").is_file()


def test_report_says_how_far_it_is_reading_records(fake_sweep, monkeypatch, capsys):
    """A long record read prints progress lines off a terminal (each record counted once)."""
    import functools

    from fcnlab import progress as progress_mod
    from fcnlab.report import runs as runs_mod

    monkeypatch.setattr(progress_mod, "is_interactive", lambda: False)
    monkeypatch.setattr(runs_mod, "Progress",
                        functools.partial(progress_mod.Progress, delay=0, every=0))
    found = runs_mod.find_runs(fake_sweep)
    lines = [ln for ln in capsys.readouterr().out.splitlines()
             if ln.startswith("report: reading run records")]
    assert found and len(lines) == len(found) + 1  # one per record, then the closing line
    assert f"{len(found)} runs" in lines[-1] and "done in" in lines[-1]
