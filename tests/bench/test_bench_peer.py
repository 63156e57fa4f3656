"""``python -m fcnlab.bench --peer MODULE:CALLABLE``: a reference network timed against ours on the
same input. The peer here is a tiny FCN-like net defined in this file (the file doubles as the
peer module); no timing assertions, only that the comparison is made and reported."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fcnlab.bench import PRESETS, suite
from fcnlab.bench import peer as peer_mod

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()


class TinyPeer(nn.Module):
    """conv, pool /2, conv, 1×1 scorer, learnt 2× upsampling: N×K×H×W out for even H, W."""

    def __init__(self, n_class: int = 5, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.score = nn.Conv2d(width, n_class, 1)
        self.up = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, padding=1, bias=False)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv1(x)))
        return self.up(self.score(torch.relu(self.conv2(h))))


class CoarsePeer(TinyPeer):
    """Forgets to upsample: its output is half the input's size."""

    def forward(self, x):
        return self.score(self.pool(torch.relu(self.conv1(x))))


def test_peer_cli_reports_both_and_the_ratio(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fcnlab.bench", "--preset", "tiny", "--skip", "rows", "data",
         "metrics", "patchwise", "--peer", f"{THIS}:TinyPeer", "--peer-kwargs", '{"n_class": 5}',
         "--peer-reps", "2", "--profile", "--profile-steps", "1", "--profile-top", "4",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["rows"] == []
    p = result["peer"]
    row = PRESETS["tiny"].extra_rows[0]
    assert p["row"] == PRESETS["tiny"].peer_row == row.name
    assert p["num_classes"] == 5 and p["output_shapes_agree"]
    assert p["ours_output_shape"] == p["peer_output_shape"] == [row.batch, 5, *row.hw]
    for who in ("ours", "peer"):
        assert len(p[f"{who}_train_step_s"]) == 2 and len(p[f"{who}_eval_batch_s"]) == 2
        assert p[f"{who}_train_step_s_median"] > 0 and p[f"{who}_eval_batch_s_median"] > 0
        assert 0 < len(p["profile"][who]["top"]) <= 4
        assert 0 < len(p["profile"][f"{who}_eval"]["top"]) <= 4
    assert p["train_speed_ratio"] == pytest.approx(
        p["peer_train_step_s_median"] / p["ours_train_step_s_median"])
    assert p["eval_speed_ratio"] > 0 and p["train_speed_ratio_paired"] > 0
    assert not p["params_agree"]  # a different network: the table says so
    kinds = [t["target"] for t in result["targets"]]
    assert "ours at least as fast as the peer (train)" in kinds
    for word in ("ours/peer speed", "output shapes agree", "profile ours", "profile peer",
                 "DIFFER", "targets:"):
        assert word in proc.stdout, word


def test_module_form_and_shapes(monkeypatch):
    monkeypatch.syspath_prepend(str(THIS.parent))
    factory = peer_mod.load_peer(f"{THIS.stem}:TinyPeer")
    assert factory().__class__.__name__ == "TinyPeer"
    row = PRESETS["tiny"].extra_rows[0]
    with pytest.raises(peer_mod.PeerError, match="output shapes differ"):
        peer_mod.bench_peer(f"{THIS}:CoarsePeer", {}, row, suite.default_conf_dir(),
                            torch.device("cpu"), reps=1, warmup=0)


@pytest.mark.parametrize("spec, words", [
    ("no_such_module_xyz.models:FCN8s", ["no_such_module_xyz.models", "cannot import module"]),
    ("/no/such/dir/fcn8s.py:FCN8s", ["/no/such/dir/fcn8s.py", "no file"]),
    ("torch.nn:NoSuchNet", ["torch.nn", "NoSuchNet"]),
    ("torch.nn.Conv2d", ["expected"]),
])
def test_bad_peer_names_the_path(spec, words):
    with pytest.raises(peer_mod.PeerError) as e:
        peer_mod.load_peer(spec)
    for w in words:
        assert w in str(e.value)


def test_bad_peer_is_one_line_before_any_work(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fcnlab.bench", "--preset", "tiny", "--peer",
         "nowhere_pkg.models:FCN8s", "--out", str(tmp_path / "b.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "nowhere_pkg.models" in proc.stderr and "[bench]" not in proc.stderr
    assert not (tmp_path / "b.json").exists()


def test_file_in_a_package_imports_without_the_package_init(tmp_path):
    pkg = tmp_path / "peerpkg_q7"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('needs a dataset library')\n")
    (pkg / "models" / "__init__.py").write_text("raise ImportError('needs torchvision')\n")
    (pkg / "models" / "base.py").write_text("WIDTH = 3\n")
    (pkg / "models" / "net.py").write_text(
        "from torch import nn\nfrom .base import WIDTH\n\n"
        "class Net(nn.Conv2d):\n    def __init__(self, k=2):\n"
        "        super().__init__(3, k, WIDTH, padding=1)\n")
    try:
        factory = peer_mod.load_peer(f"{pkg}/models/net.py:Net")
        assert factory(k=4).out_channels == 4 and factory.__module__ == "peerpkg_q7.models.net"
    finally:
        for name in [m for m in sys.modules if m.startswith("peerpkg_q7")]:
            del sys.modules[name]
