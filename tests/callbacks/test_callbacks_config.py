"""conf/callbacks/: one file per callback, the defaults list, and the command-line spellings that
add, drop and set them; fcnlab.tasks.trainer.build_trainer: configured callbacks and plugins reach
the trainer beside the task's own (the run record, atomic checkpoint writes)."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path

import lightning as L
import pytest
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import (EarlyStopping, LearningRateMonitor, ModelCheckpoint,
                                         RichProgressBar, Timer)
from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from conftest import CONF_DIR, compose_cfg
from fcnlab.callbacks.bn_stats import RecomputeBNStats
from fcnlab.callbacks.checkpoints import AtomicCheckpointIO
from fcnlab.callbacks.progress import PlainProgress
from fcnlab.callbacks.records import RunRecord
from fcnlab.callbacks.wandb_media import WandbPredictions
from fcnlab.config import instantiate
from fcnlab.errors import ConfigError
from fcnlab.tasks import trainer as trainer_mod
from fcnlab.tasks.trainer import build_trainer

SETS = {"default", "none"}  # files that list callbacks rather than define one
SINGLE = sorted(p.stem for p in (CONF_DIR / "callbacks").glob("*.yaml") if p.stem not in SETS)
DEFAULT = ["latest", "best", "lr_monitor", "plain_progress", "wandb_predictions",
           "prediction_images"]


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


def _compose(tmp_path: Path, overrides: list[str]):
    return compose_cfg("train", overrides, tmp_path)


def _of(trainer: L.Trainer, kind: type) -> list:
    return [c for c in trainer.callbacks if isinstance(c, kind)]


# ----------------------------------------------------------------------------- the files
@pytest.mark.parametrize("stem", SINGLE)
def test_each_file_is_one_callback_under_its_own_name(stem, tmp_path):
    text = (CONF_DIR / "callbacks" / f"{stem}.yaml").read_text()
    assert not re.search(r"^defaults:", text, re.M), \
        f"{stem}.yaml pulls in other files; list them in default.yaml"
    cfg = _compose(tmp_path, [f"callbacks={stem}"])
    assert list(cfg.callbacks) == [stem]
    assert isinstance(instantiate(cfg.callbacks[stem]), L.Callback)


def test_default_lists_the_everyday_callbacks(tmp_path):
    callbacks = _compose(tmp_path, []).callbacks
    assert set(DEFAULT) <= set(callbacks)
    assert not {"early_stopping", "rich_progress", "bn_recompute"} & set(callbacks)
    # The keys users and presets set keep their names and meanings.
    assert callbacks.latest.save_last is True and callbacks.latest.monitor is None
    assert callbacks.best.monitor == "val/mean_iou" and callbacks.best.mode == "max"
    assert not _compose(tmp_path, ["callbacks=none"]).callbacks


def test_bn_recompute_is_added_to_the_defaults(tmp_path):
    cfg = _compose(tmp_path, ["callbacks=[default,bn_recompute]",
                              "callbacks.bn_recompute.max_batches=2"])
    assert list(cfg.callbacks)[-1] == "bn_recompute" and set(DEFAULT) <= set(cfg.callbacks)
    trainer = build_trainer(cfg)
    (bn,) = _of(trainer, RecomputeBNStats)
    assert bn.max_batches == 2
    assert {c.dirpath for c in _of(trainer, ModelCheckpoint)} == {
        str(tmp_path / "run" / "checkpoints")}


# ----------------------------------------------------------------------------- add, drop, set
def test_add_drop_and_set_reach_the_trainer(tmp_path):
    cfg = _compose(tmp_path, ["callbacks=[default,early_stopping]", "~callbacks.latest",
                              "callbacks.early_stopping.patience=2",
                              "callbacks.best.save_top_k=3"])
    trainer = build_trainer(cfg)
    (stop,) = _of(trainer, EarlyStopping)
    assert stop.patience == 2 and stop.monitor == "val/mean_iou"
    (best,) = _of(trainer, ModelCheckpoint)  # latest was dropped
    assert best.save_top_k == 3 and best.monitor == "val/mean_iou" and not best.save_last
    assert _of(trainer, LearningRateMonitor) and _of(trainer, PlainProgress)


def test_early_stopping_stops_the_run_and_the_record_says_where(tmp_path, data_dir):
    from fcnlab.tasks.train import train

    # min_delta 1.0: no mean IU (in [0, 1]) can improve by that, so with patience 1 the second
    # evaluation (iteration 4) ends a run that would otherwise last 8 iterations.
    cfg = compose_cfg("train", ["callbacks=[default,early_stopping]", "trainer.max_steps=8",
                                "callbacks.early_stopping.patience=1",
                                "callbacks.early_stopping.min_delta=1.0"],
                      tmp_path, data_dir=data_dir)
    record = train(cfg)
    assert record["status"] == "finished" and record["iterations"] == 4
    assert [e["iteration"] for e in record["evaluations"]] == [2, 4]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["config"]["callbacks"]["early_stopping"]["patience"] == 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_a_callback_given_on_the_command_line_reaches_the_trainer(tmp_path):
    cfg = _compose(tmp_path, ["+callbacks.timer._target_=lightning.pytorch.callbacks.Timer",
                              "+callbacks.timer.duration=00:01:00:00"])
    recorder = RunRecord(tmp_path, {})
    trainer = build_trainer(cfg, callbacks=[recorder])
    assert len(_of(trainer, Timer)) == 1
    names = [type(c).__name__ for c in trainer.callbacks]
    # Configured ones first, then the task's own: RunRecord takes the scores out of the module
    # after the callbacks that show them.
    assert names.index("WandbPredictions") < names.index("RunRecord")


def test_a_callback_entry_that_is_not_a_config_names_its_key(tmp_path):
    cfg = _compose(tmp_path, ["+callbacks.oops=3"])
    with pytest.raises(ConfigError, match=r"callbacks\.oops: expected a config with a _target_"):
        build_trainer(cfg)


# ----------------------------------------------------------------------------- plugins
def test_configured_plugins_are_extended_with_atomic_checkpoints(tmp_path):
    cfg = _compose(tmp_path, ["+trainer.plugins=[{_target_: "
                              "lightning.pytorch.plugins.environments.LightningEnvironment}]"])
    trainer = build_trainer(cfg)
    assert isinstance(trainer._accelerator_connector.cluster_environment, LightningEnvironment)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_slurm_requeue_plugin_composes_beside_atomic_checkpoints(tmp_path, monkeypatch):
    for key, value in (("SLURM_NTASKS", "1"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"),
                       ("SLURM_NODEID", "0"), ("SLURM_JOB_NAME", "job"), ("SLURM_JOB_ID", "1")):
        monkeypatch.setenv(key, value)
    cfg = _compose(tmp_path, ["+trainer.plugins=[{_target_: lightning.pytorch.plugins."
                              "environments.SLURMEnvironment, auto_requeue: true}]"])
    trainer = build_trainer(cfg)
    env = trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_configured_checkpoint_io_is_kept_with_a_warning(tmp_path, caplog):
    cfg = _compose(tmp_path, ["+trainer.plugins={_target_: "
                              "lightning.pytorch.plugins.io.TorchCheckpointIO}"])
    with caplog.at_level(logging.WARNING, logger="fcnlab.tasks.trainer"):
        trainer = build_trainer(cfg)
    assert type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
    assert "not atomic" in caplog.text


# ----------------------------------------------------------------------------- progress
def test_off_a_terminal_the_bar_is_off_and_plain_lines_are_on(tmp_path):
    trainer = build_trainer(_compose(tmp_path, ["trainer.log_every_n_steps=3"]))
    assert trainer.progress_bar_callback is None
    (plain,) = _of(trainer, PlainProgress)
    plain.on_train_start(trainer, None)
    assert plain.every == 3 and plain._active


def test_on_a_terminal_the_bar_shows_and_plain_lines_stay_quiet(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "is_interactive", lambda: True)
    trainer = build_trainer(_compose(tmp_path, []))
    assert trainer.progress_bar_callback is not None
    (plain,) = _of(trainer, PlainProgress)
    plain.on_train_start(trainer, None)
    assert not plain._active


def test_rich_progress_is_kept_off_a_terminal(tmp_path):
    cfg = _compose(tmp_path, ["callbacks=[default,rich_progress]",
                              "callbacks.rich_progress.refresh_rate=5"])
    trainer = build_trainer(cfg)
    assert isinstance(trainer.progress_bar_callback, RichProgressBar)
    assert trainer.progress_bar_callback.refresh_rate == 5


def test_plain_progress_rejects_a_bad_interval():
    with pytest.raises(ConfigError, match=r"callbacks\.plain_progress\.every: .* got 0"):
        PlainProgress(every=0)
    assert PlainProgress(every=None).every == 50


def test_wandb_predictions_is_listed_and_idle_without_wandb(tmp_path):
    trainer = build_trainer(_compose(tmp_path, []))
    assert len(_of(trainer, WandbPredictions)) == 1
    assert not [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]


# ----------------------------------------------------------------------------- accumulation
def test_accumulation_keeps_the_evaluation_interval_in_iterations(tmp_path):
    """With k accumulated batches per SGD iteration (FCN's batch 20 as 20 images of batch 1),
    Lightning counts val_check_interval in batches: the trainer gets k times the iterations."""
    cfg = _compose(tmp_path, ["+trainer.accumulate_grad_batches=20",
                              "trainer.val_check_interval=200"])
    trainer = build_trainer(cfg)
    assert trainer.accumulate_grad_batches == 20 and trainer.val_check_interval == 4000
    assert build_trainer(_compose(tmp_path, ["trainer.val_check_interval=200"])
                         ).val_check_interval == 200
    with pytest.raises(ConfigError, match="accumulate_grad_batches: expected a positive int"):
        build_trainer(_compose(tmp_path, ["+trainer.accumulate_grad_batches=0"]))
