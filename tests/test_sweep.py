"""Sweep robustness: one failing job leaves the others' results intact and is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_multirun_with_a_failing_job(tmp_path, data_dir):
    # Three jobs; the middle one has a wrong value and fails before training.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "debug=fast", "model=fcn32s",
         "model.net.width=0.0625,abc,0.125", "trainer.max_steps=2",
         "trainer.val_check_interval=2", f"paths.log_dir={tmp_path}",
         f"paths.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0  # the sweep says that something failed
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 3, jobs
    ok = [json.loads((j / "results.json").read_text()) for j in (jobs[0], jobs[2])]
    assert all(r["status"] == "finished" for r in ok)  # before and after the failure
    assert all((j / "checkpoints" / "last.ckpt").is_file() for j in (jobs[0], jobs[2]))
    assert "model.net.width" in proc.stderr + proc.stdout
    # The report lists the failed job as failed, not as a gap.
    rep = subprocess.run([sys.executable, "-m", "fcnlab.report", str(tmp_path / "sweep"),
                          "--no-predictions"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert rep.returncode == 0, rep.stderr
    table = (tmp_path / "sweep" / "report" / "table.md").read_text()
    assert "failed" in table and jobs[1].name in table
