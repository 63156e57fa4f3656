"""logger=wandb: offline, one wandb run per job (closed at the job's end), expected content.

Runs in-process under the suite's network guard: an offline wandb run must not open a
connection. Two train() calls in one process are what a Hydra multirun does with its jobs.
"""

from __future__ import annotations

import pytest

from conftest import compose_cfg
from fcnlab.tasks.train import train

pytest.importorskip("wandb", reason='needs the loggers extra: pip install "fcnlab[loggers]"')


def test_offline_wandb_one_run_per_job(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    runs = []
    for model in ("fcn32s", "segnet"):
        cfg = compose_cfg("train", [f"model={model}", "logger=wandb", "trainer.max_steps=2",
                                    "trainer.val_check_interval=2"], tmp_path / model,
                          data_dir=data_dir)
        train(cfg)
        found = list((tmp_path / model / "run" / "wandb").glob("offline-run-*"))
        assert len(found) == 1, found  # this job's own run, nothing merged into another
        runs.append(found[0])
        # CSV logging stays on beside wandb
        assert (tmp_path / model / "run" / "csv" / "metrics.csv").is_file()
    assert runs[0].name != runs[1].name
    for run, model in zip(runs, ("fcn32s", "segnet")):
        data = next(run.glob("*.wandb")).read_bytes()
        for key in (b"val/mean_iou", b"val/bf", b"val/iou_per_class", b"val/predictions",
                    model.encode()):
            assert key in data, (run, key)
        assert list((run / "files" / "media" / "table").rglob("*.table.json"))
        assert list((run / "files" / "media" / "images").rglob("*.png"))
