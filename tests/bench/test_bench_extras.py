"""The bench's fast-path variant rows, ``--profile`` and the targets it checks (memory, peer).
No timing assertions: only that it measures and reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fcnlab.bench import PRESETS, suite
from fcnlab.bench.rows import resolve_row
from fcnlab.bench.targets import targets

ROOT = Path(__file__).resolve().parents[2]


def test_fast_variant_and_profile_rows(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fcnlab.bench", "--preset", "tiny", "--rows", "fcn8s_caffe_b1",
         "--fast", "channels_last", "--profile", "--profile-steps", "1", "--skip", "data",
         "metrics", "patchwise", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    plain, cl = result["rows"]
    assert (plain["name"], cl["name"]) == ("fcn8s_caffe_b1", "fcn8s_caffe_b1+cl")
    assert plain["fast"] == {} and cl["fast"] == {"channels_last": True}
    assert cl["gflop_per_image"] == pytest.approx(plain["gflop_per_image"])  # same arithmetic
    assert cl["vs_plain"]["row"] == "fcn8s_caffe_b1" and cl["vs_plain"]["train_speedup"] > 0
    for r in (plain, cl):
        top = r["profile"]["top"]
        assert len(top) == 8 and all(o["self_ms"] > 0 and 0 < o["share_pct"] <= 100 for o in top)
        assert any("convolution" in o["op"] for o in top)
        assert r["activation_mib_per_image"] > 0 and r["eval_peak_mem_mib"] >= 0
        assert r["eval_peak_mem_mib_extra_image"] is None  # only on the memory target's row
    assert "profile fcn8s_caffe_b1+cl" in proc.stdout and "the training speed of" in proc.stdout


def test_unknown_fast_setting_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fcnlab.bench", "--preset", "tiny", "--fast", "turbo",
         "--out", str(tmp_path / "b.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "turbo" in proc.stderr and "channels_last" in proc.stderr


def test_rows_resolve_with_variants():
    small = PRESETS["small"]
    row = resolve_row(small, "fcn8s_caffe_full+cl+bf16")
    assert row.name == "fcn8s_caffe_full+cl+bf16" and row.width == 1.0 and row.batch == 1
    assert row.fast == {"channels_last": True, "precision": "bf16-mixed"}
    assert resolve_row(small, "fcn8s_caffe").fast == {}
    with pytest.raises(KeyError):
        resolve_row(small, "nope")
    assert resolve_row(small, small.peer_row).overrides == {"geometry": "caffe"}
    mem = PRESETS["memory"]
    assert mem.extras == () and [r.name for r in mem.rows] == ["fcn8s_caffe_500x375_full"]


def test_embedded_recipe_row_is_the_scales_fcn8s(tmp_path):
    """The bench's fcn8s_embedded row builds what `python train.py` (scale=embedded) trains, and
    fcn8s_caffe the paper's network: their throughput sits side by side in docs/benchmark.md."""
    from conftest import compose_cfg

    cfg = compose_cfg("train", [], tmp_path, debug=None)
    net = cfg.model.net
    row = resolve_row(PRESETS["small"], "fcn8s_embedded")
    assert row.overrides == {"geometry": net.geometry, "batch_norm": net.batch_norm,
                             "fc_channels": net.fc_channels}
    assert (row.width, row.batch, list(row.hw)) == (net.width, cfg.data.datamodule.batch_size,
                                                    list(cfg.data.datamodule.image_size))
    built = suite.build_net(suite.default_conf_dir(), row, 11)
    assert built.trunk.batch_norm and built.geometry == "aligned"
    paper = suite.build_net(suite.default_conf_dir(), resolve_row(PRESETS["small"],
                                                                  "fcn8s_caffe"), 11)
    assert not paper.trunk.batch_norm and paper.trunk.fc7.weight.shape[0] == 512  # 4096 / 8


def _row(**kw):
    r = {"name": "fcn8s_caffe_500x375_full", "model": "fcn8s", "net": {"geometry": "caffe"},
         "width": 1.0, "batch": 1, "input_hw": [500, 375], "fast": {}, "peak_mem_mib": 4000.0,
         "peak_mem_method": "VmHWM", "eval_peak_mem_mib_extra_image": 300.0,
         "activation_mib_per_image": 1500.0}
    r.update(kw)
    return r


def test_targets_memory_and_peer():
    prof = {"top": [{"op": "aten::convolution_backward", "share_pct": 60.0},
                    {"op": "aten::mkldnn_convolution", "share_pct": 25.0}]}
    result = {"rows": [_row(), _row(name="other", width=0.5),
                       _row(name="big", peak_mem_mib=7000.0, profile=prof)],
              "peer": {"row": "fcn8s_caffe_full", "train_speed_ratio": 0.8,
                       "eval_speed_ratio": 1.2, "profile": {"ours": prof}}}
    ts = targets(result)
    mem = [t for t in ts if t["unit"] == "MiB"]
    assert [(t["row"], t["met"]) for t in mem] == [
        ("fcn8s_caffe_500x375_full", True), ("fcn8s_caffe_500x375_full", True),
        ("big", False), ("big", True)]
    assert mem[2]["limited_by"][0]["op"] == "aten::convolution_backward"
    peer = [t for t in ts if t["unit"] == "x"]
    assert [t["met"] for t in peer] == [False, True]
    assert peer[0]["limited_by"][0]["share_pct"] == 60.0
    from fcnlab.bench.__main__ import table
    text = table({"machine": {"device": "cpu", "name": "x", "threads": 2, "torch": "t",
                              "matmul_peak": {"gflops": 1.0, "n": 8, "reps": 1}},
                  "preset": "memory", "rows": [], "targets": ts, "wall_s": 1.0})
    assert "MISSED training step peak host memory <= 6 GiB [big]" in text
    assert "time goes to: aten::convolution_backward 60%" in text


def test_speed_targets_are_judged_from_the_result():

    result = {
        "rows": [{"name": "fcn8s_aligned_256_w4", "pct_of_matmul_peak": 27.0,
                  "profile": {"top": [{"op": "aten::convolution_backward", "share_pct": 46.0}]}}],
        "aligned_vs_caffe": {"train_speedup": 4.7},
        "data_pipeline": {"ratio_vs_fcn8s_caffe": 2.5},
        "metrics_cost": {"model": "fcn8s_caffe", "confmat_share_pct": 1.4, "bf_share_pct": 21.0},
        "patchwise_vs_dense": {"ratio": 9000.0, "max_rel_diff": 1e-6},
    }
    met = {t["target"]: t["met"] for t in targets(result)}
    assert met == {
        "aligned geometry trains >= 4x faster than caffe": True,
        "training step >= 60% of the matmul peak": False,
        "data pipeline >= 3x the training step's rate": False,
        "confusion-matrix update <= 2% of an evaluation pass": True,
        "BF update <= 20% of an evaluation pass": False,
        "patch-wise vs dense >= 1000x, same scores": True,
    }
    (peak,) = [t for t in targets(result) if t["row"] == "fcn8s_aligned_256_w4"]
    assert peak["limited_by"][0]["op"] == "aten::convolution_backward"  # where the time goes
