"""The probe scripts under scripts/ that the docs' findings rest on, run on small inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REDRAW = ROOT / "scripts" / "redraw_layers.py"


def _classifier(path: Path) -> dict:
    state = {"features.0.weight": torch.full((8, 3, 3, 3), 0.5), "features.0.bias": torch.ones(8),
             "classifier.0.weight": torch.full((16, 72), 0.5),
             "classifier.0.bias": torch.ones(16)}
    torch.save(state, path)
    path.with_name(path.name + ".json").write_text(json.dumps(
        {"preprocess": "torchvision", "layout": "torchvision", "sha256": "ab" * 32}))
    return state


def test_redraw_layers_draws_only_the_named_layers(tmp_path):
    src, dest = tmp_path / "c.pt", tmp_path / "out" / "c.pt"
    state = _classifier(src)
    done = subprocess.run([sys.executable, str(REDRAW), str(src), str(dest), "classifier.0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    new = torch.load(dest, weights_only=True)
    assert torch.equal(new["features.0.weight"], state["features.0.weight"])
    assert torch.equal(new["features.0.bias"], state["features.0.bias"])
    w = new["classifier.0.weight"]
    assert w.shape == (16, 72) and torch.count_nonzero(new["classifier.0.bias"]) == 0
    # He: N(0, 2 / fan_in), fan_in 72 -> std 0.167 (1,152 draws: within 15%)
    assert abs(w.std().item() / (2 / 72) ** 0.5 - 1) < 0.15, w.std()
    sidecar = json.loads(dest.with_name("c.pt.json").read_text())
    assert sidecar["preprocess"] == "torchvision" and "sha256" not in sidecar
    assert sidecar["redrawn"] == ["classifier.0"]
    again = tmp_path / "again.pt"  # a fixed seed: the same file twice
    subprocess.run([sys.executable, str(REDRAW), str(src), str(again), "classifier.0"],
                   check=True, capture_output=True, timeout=120)
    assert torch.equal(torch.load(again, weights_only=True)["classifier.0.weight"], w)


def test_redraw_layers_names_a_missing_layer(tmp_path):
    src = tmp_path / "c.pt"
    _classifier(src)
    done = subprocess.run([sys.executable, str(REDRAW), str(src), str(tmp_path / "d.pt"),
                           "conv5_1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"{src}: no layer ['conv5_1']" in done.stderr and "features.0" in done.stderr
    assert not (tmp_path / "d.pt").exists()
