"""``python -m fcnlab.bench --preset tiny`` runs and writes the JSON it promises. No timing
assertions: the benchmark measures speed, tests only check that it measures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fcnlab.bench import PRESETS

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"name", "model", "input_hw", "batch", "width", "train_iters_per_s",
            "train_images_per_s", "eval_images_per_s", "peak_mem_mib", "gflop_per_image",
            "achieved_gflops", "pct_of_matmul_peak", "train_step_s_median"}
POSITIVE = ("train_iters_per_s", "train_images_per_s", "eval_images_per_s", "gflop_per_image",
            "achieved_gflops", "pct_of_matmul_peak", "train_step_s_median")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fcnlab.bench", "--preset", "tiny", "--out", str(out),
         "--data-dir", str(tmp / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_json_has_every_measurement(tiny_run):
    result, _ = tiny_run
    assert result["preset"] == "tiny"
    assert result["machine"]["device"] in ("cpu", "cuda")
    assert result["machine"]["matmul_peak"]["gflops"] > 0
    names = [r["name"] for r in result["rows"]]
    assert names == [r.name for r in PRESETS["tiny"].rows]
    assert {"fcn8s_caffe", "fcn8s_aligned", "segnet", "deeplab_largefov", "deconvnet"} <= set(names)
    for row in result["rows"]:
        assert ROW_KEYS <= set(row), row["name"]
        for key in POSITIVE:
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key, row[key])
        assert row["peak_mem_mib"] >= 0
    a = result["aligned_vs_caffe"]
    assert a["train_speedup"] > 0 and a["eval_speedup"] > 0
    assert a["flop_ratio"] > 3  # a count, not a timing: aligned does far fewer FLOPs
    d = result["data_pipeline"]
    assert d["images_per_s"] > 0 and d["ratio_vs_fcn8s_caffe"] > 0
    m = result["metrics_cost"]
    for key in ("forward_s", "confmat_update_s", "bf_update_s"):
        assert m[key] > 0
    assert 0 < m["confmat_share_pct"] < 100 and 0 < m["bf_share_pct"] < 100
    p = result["patchwise_vs_dense"]
    assert p["ratio"] > 0 and p["patchwise_s_per_image"] > 0 and p["dense_s_per_image"] > 0
    assert p["max_rel_diff"] < 1e-4  # the two agree where both are defined


def test_table_is_printed(tiny_run):
    _, stdout = tiny_run
    for word in ("| row |", "fcn8s_aligned", "aligned_vs_caffe", "data_pipeline", "metrics_cost",
                 "patchwise_vs_dense", "matmul peak"):
        assert word in stdout, word


def test_unknown_row_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fcnlab.bench", "--preset", "tiny", "--rows", "nope",
         "--out", str(tmp_path / "b.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "fcn8s_caffe" in proc.stderr
