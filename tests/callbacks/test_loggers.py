"""ResumableCSVLogger: an interrupted fit resumed from its checkpoint leaves the same metrics.csv
as a fit that was never interrupted (Lightning's CSVLogger loses the rows before the checkpoint).

A tiny module on random tensors, in process: each fit takes about a second.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from fcnlab.callbacks.loggers import KeepingExperimentWriter, ResumableCSVLogger

# 16 samples, batch 4: 4 iterations an epoch; an evaluation (and a checkpoint) every 4 iterations,
# so a resume starts a new epoch and replays exactly (a plain DataLoader cannot resume mid-epoch).
STEPS, EVERY, CRASH_AT = 12, 4, 10


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, _):
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Crash(L.Callback):
    """Dies at the start of iteration CRASH_AT + 1, after the rows of iterations 9 and 10: two
    rows after the iteration-8 checkpoint that the resumed fit logs again."""

    def on_train_batch_start(self, trainer, *_):
        if trainer.global_step == CRASH_AT:
            raise RuntimeError("simulated crash")


def _loader(seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g))
    return DataLoader(data, batch_size=4)


def _fit(run: Path, logger_cls, ckpt_path=None, crash=False) -> None:
    L.seed_everything(0)
    trainer = L.Trainer(
        max_steps=STEPS, val_check_interval=EVERY, check_val_every_n_epoch=None,
        log_every_n_steps=1, logger=logger_cls(save_dir=run, name="csv", version=""),
        callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", filename="iter{step}",
                                   auto_insert_metric_name=False, save_top_k=-1)]
        + ([Crash()] if crash else []),
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    if crash:
        with pytest.raises(RuntimeError, match="simulated crash"):
            trainer.fit(Tiny(), _loader(1), _loader(2), ckpt_path=ckpt_path)
    else:
        trainer.fit(Tiny(), _loader(1), _loader(2), ckpt_path=ckpt_path)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(run: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """metrics.csv of the uninterrupted fit."""
    run = tmp_path_factory.mktemp("uninterrupted")
    _fit(run, ResumableCSVLogger)
    return (run / "csv" / "metrics.csv").read_bytes()


@pytest.mark.parametrize("logger_cls, keeps", [(ResumableCSVLogger, True), (CSVLogger, False)],
                         ids=["resumable", "lightning-deletes"])
def test_crash_then_resume_logs_every_step_once(tmp_path, reference, logger_cls, keeps):
    _fit(tmp_path, logger_cls, crash=True)
    metrics = tmp_path / "csv" / "metrics.csv"
    before = metrics.read_bytes()
    steps_before = [int(r["step"]) for r in _rows(metrics)]
    assert max(steps_before) >= 2 * EVERY  # rows after the checkpoint: the resume replays them
    _fit(tmp_path, logger_cls, ckpt_path=tmp_path / "checkpoints" / f"iter{2 * EVERY}.ckpt")
    after = metrics.read_bytes()
    # The check that catches Lightning's behaviour: its logger deleted the rows before the
    # checkpoint, so the table is not the uninterrupted one.
    assert (after == reference) is keeps
    if keeps:
        rows = _rows(metrics)
        train = [int(r["step"]) for r in rows if r["train/loss"]]
        val = [int(r["step"]) for r in rows if r["val/loss"]]
        assert train == list(range(STEPS))  # every iteration once
        assert val == [EVERY - 1, 2 * EVERY - 1, 3 * EVERY - 1]  # every evaluation once
        # The pre-crash rows (step < the checkpoint's iteration) are kept byte for byte.
        kept = 1 + sum(s < 2 * EVERY for s in steps_before)
        assert after.splitlines()[:kept] == before.splitlines()[:kept]


def test_finished_fit_rerun_rewrites_nothing(tmp_path):
    _fit(tmp_path, ResumableCSVLogger)
    before = _snapshot(tmp_path)
    _fit(tmp_path, ResumableCSVLogger, ckpt_path=tmp_path / "checkpoints" / f"iter{STEPS}.ckpt")
    assert _snapshot(tmp_path) == before


def test_fresh_fit_in_a_used_folder_starts_the_table_again(tmp_path, reference):
    _fit(tmp_path, ResumableCSVLogger, crash=True)
    _fit(tmp_path, ResumableCSVLogger)  # no checkpoint: the fit logs every step again
    assert (tmp_path / "csv" / "metrics.csv").read_bytes() == reference


def test_writer_keeps_columns_drops_half_row_and_adds_a_column(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("a,step\n1.0,0\n2.0,1\n3.0,2\n4.0,")  # killed while writing step 3
    writer = KeepingExperimentWriter(str(tmp_path))
    assert path.is_file() and writer.metrics_keys == ["a", "step"]
    assert writer.drop_from(2) == 2  # the row of step 2 and the half row
    assert path.read_text() == "a,step\n1.0,0\n2.0,1\n"
    mtime = path.stat().st_mtime_ns
    assert writer.drop_from(2) == 0 and path.stat().st_mtime_ns == mtime  # not rewritten
    writer.log_metrics({"a": 5.0}, step=2)
    writer.save()  # known columns: appended
    assert path.read_text() == "a,step\n1.0,0\n2.0,1\n5.0,2\n"
    writer.log_metrics({"b": 6.0}, step=3)
    writer.save()  # a new column: the whole table with the wider header (atomically)
    assert path.read_text() == "a,b,step\n1.0,,0\n2.0,,1\n5.0,,2\n,6.0,3\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
