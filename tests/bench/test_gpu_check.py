"""``scripts/gpu_check.sh --dry-run``: the GPU check's real phases (model-row children through the
benchmark's ``bench_row``, ``train.py`` with the step timer) on the CPU at tiny sizes, into the
JSON and table it promises; without a GPU and without ``--dry-run`` it refuses with a message.
No timing assertions: the check measures speed, the tests only check that it measures."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcnlab.bench.gpu_rows import DRY, GPU, SPECS, VARIANTS, variant_suffix
from fcnlab.bench.gpu_train import train_overrides
from fcnlab.bench.rows import Row, variant

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
POSITIVE = ("train_step_s_median", "ms_per_iter", "train_iters_per_s", "train_images_per_s",
            "eval_images_per_s", "gflop_per_image")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(tmp / "out"), "--tag", "t",
         "--work", str(tmp / "work"), "--commit", "abc123"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHON": sys.executable})
    out = tmp / "out"
    assert (out / "gpu-t.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu-t.json").read_text())
    return proc, result, (out / "gpu-t.txt").read_text(), out


def test_dry_run_passes_every_phase(dry_run):
    proc, result, _, out = dry_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["ok"] and result["dry_run"]
    assert [p["name"] for p in result["phases"]] == (
        ["preflight"] + [s.name for s in SPECS] + ["train"])
    assert all(p["status"] == "ok" for p in result["phases"]), result["phases"]
    assert (out / "gpu-t.log").is_file()
    assert result["commit"]["sha"] == "abc123"
    m = result["machine"]
    assert m["device"] == "cpu" and m["torch"] and m["name"] and m["threads"] >= 1


def test_every_row_and_variant_is_there_with_numbers(dry_run):
    _, result, _, _ = dry_run
    names = [r["name"] for r in result["rows"]]
    want = [s.name if v == "fp32" else f"{s.name}+{variant_suffix(v)}"
            for s in SPECS for v in VARIANTS]
    assert names == want
    assert {"fcn8s_500x375", "fcn8s_500x500", "segnet_360x480"} == {s.name for s in SPECS}
    for row in result["rows"]:
        if row["variant"] == "compile":  # minutes of compiling on a CPU: the GPU run's alone
            assert row["status"].startswith("skipped: "), row
            continue
        assert row["status"] == "ok", row
        for key in POSITIVE:
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key, row[key])
        assert row["peak_mem_mib"] >= 0
        assert row["width"] == DRY.width
        if row["variant"] != "fp32":
            assert row["vs_fp32"]["train_speedup"] > 0


def test_row_names_are_the_benchmarks_variant_names():
    base = Row("r", "fcn8s", (8, 8), 1, 1.0)
    for v in VARIANTS[1:]:
        assert variant(base, v).name == f"r+{variant_suffix(v)}"


def test_training_phase_results(dry_run):
    _, result, _, _ = dry_run
    t = result["train"]
    steps = DRY.train["steps"]
    assert t["status"] == "finished" and t["iterations"] == steps == t["steps_asked"]
    assert t["train_iterations_timed"] == steps
    assert "trainer=cpu" in t["command"] and f"model.net.width={DRY.width}" in t["command"]
    assert math.isfinite(t["final_loss"]) and t["final_loss"] > 0
    assert t["iters_per_s"] > 0 and t["images_per_s"] > 0
    for key in ("mean_iou", "pixel_acc", "mean_acc"):
        assert 0 <= t["val"][key] <= 1, (key, t["val"])


def test_text_table_names_every_row(dry_run):
    _, result, text, _ = dry_run
    assert "DRY RUN" in text and "abc123" in text
    for row in result["rows"]:
        assert f"| {row['name']} | {row['variant']} |" in text, row["name"]
    assert "training: python train.py trainer=cpu" in text
    assert "validation at iteration" in text and "mean_iou" in text
    assert "all phases passed" in text


def test_the_gpu_run_overrides_the_training_to_full_width():
    words = train_overrides(GPU, Path("/w"), [])
    assert {"trainer=gpu", "model.net.width=1.0", "data.datamodule.image_size=[500,375]",
            "trainer.max_steps=300"} <= set(words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_refuses(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 2
    assert "error: no CUDA GPU is visible" in proc.stderr and "--dry-run" in proc.stderr
    assert not list(tmp_path.iterdir())  # no file with numbers that are not a GPU's


def test_a_gpu_result_names_only_targets_the_docs_list(dry_run):
    """A GPU run's JSON, once stored in docs/bench/, is judged by fcnlab.bench.targets (the docs
    test of the "Targets" section reads every stored JSON): its memory row, as CUDA reports it,
    yields targets whose words that section has; a failed row yields none."""
    from fcnlab.bench.targets import targets

    _, result, _, _ = dry_run
    row = dict(next(r for r in result["rows"] if r["name"] == "fcn8s_500x375"),
               width=1.0, input_hw=[500, 375], peak_mem_method="cuda.max_memory_allocated",
               eval_peak_mem_mib_extra_image=100.0)
    failed = {**row, "status": "error: OutOfMemoryError: ...", "error": "OutOfMemoryError: ..."}
    judged = targets({"rows": [row, failed]})
    assert [t["row"] for t in judged] == ["fcn8s_500x375"] * 2
    section = (ROOT / "docs" / "benchmark.md").read_text().split("## Targets", 1)[1]
    section = section.split("\n## ", 1)[0]
    for t in judged:
        assert f"`{t['target']}`" in section, t["target"]
