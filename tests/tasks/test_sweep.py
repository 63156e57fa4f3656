"""Sweep robustness: one failing job leaves the others' results intact and is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from optional_extras import skip_unless_installed

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow  # ~25 s, an optional launcher (the launchers extra)
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path, data_dir):
    skip_unless_installed("launcher", "joblib")  # the launchers extra
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "launcher=joblib", "debug=fast",
         "model=fcn32s,segnet", "trainer.max_steps=2", "trainer.val_check_interval=2",
         f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/results.json")]
    assert sorted(r["model"] for r in records) == ["fcn32s", "segnet"]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr


@pytest.mark.slow  # ~15 s, an optional sweeper (the optuna extra)
def test_optuna_sweeper_gets_the_validation_mean_iou(tmp_path, data_dir):
    skip_unless_installed("hparams_search", "optuna_lr")  # the optuna extra
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=optuna_lr", "debug=fast",
         "hydra.sweeper.n_trials=2", "trainer.max_steps=2", "trainer.val_check_interval=2",
         f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    best = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    finals = [json.loads(p.read_text())["evaluations"][-1]["mean_iou"]
              for p in (tmp_path / "sweep").glob("*/results.json")]
    assert len(finals) == 2
    assert f"best_value: {max(finals)}" in best


def test_multirun_with_default_paths(tmp_path, data_dir):
    # No paths.log_dir override: the sweep folder resolves from the working directory.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "debug=fast", "model=fcn32s,fcn8s",
         "trainer.max_steps=2", "trainer.val_check_interval=2", f"paths.data_dir={data_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "logs" / "train" / "multiruns").glob("*/*/results.json"))) == 2
