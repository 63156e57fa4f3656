"""A CSV logger whose ``metrics.csv`` survives ``resume=auto``: every logged step exactly once.

Lightning's :class:`~lightning.pytorch.loggers.CSVLogger` with a fixed ``version`` deletes an
existing ``metrics.csv`` when it starts ("Previous log files in this directory will be deleted",
``lightning/fabric/loggers/csv_logs.py``, ``_ExperimentWriter._check_log_dir_exists``), so a
resumed run, or a re-run of a finished one, lost every row written before.
:class:`ResumableCSVLogger` keeps the file and, when a fit starts, drops only the rows that the fit
is about to log again:

* A fit resumed from a checkpoint of iteration G keeps the rows with ``step < G`` and drops the
  rest (what the interrupted attempt logged after the checkpoint; the resumed fit replays it).
  Lightning logs a row with ``step = fit_loop.epoch_loop._batches_that_stepped``, the number of
  batches that stepped *before* the current one (``logger_connector.log_metrics``): the train row
  of iteration i (1-based) and a validation run after iteration i both have ``step = i - 1``, and
  a checkpoint written at iteration G (on_validation_end or on_train_batch_end) restores that
  counter to G (``_TrainingEpochLoop.reset``: "batches_that_stepped is never set prior to saving a
  checkpoint"). So ``step < G`` is exactly what happened before the checkpoint, for train,
  learning-rate and validation rows alike. This assumes one optimizer step per batch (automatic
  optimization, no gradient accumulation), as every fcnlab model trains.
* A fit that starts from scratch (no checkpoint) drops every row: it logs them all again.
* A fit that has nothing left to do (its checkpoint is at ``max_steps``) drops nothing, and an
  unchanged file is never rewritten; validate/test runs only append.

The moment: Lightning calls ``log_graph(module)`` on every logger once per fit, after it has chosen
the checkpoint (``trainer.ckpt_path``) and before the first training batch
(``lightning.pytorch.loggers.utilities._log_hyperparams``, called from ``Trainer._run``). The
writer itself is created earlier (``_call_setup_hook`` touches ``logger.experiment``), which is why
it must not delete anything on creation.

Rewrites (a trim, or a header that gains a column) go to a temporary file that is renamed over
``metrics.csv``, so a kill mid-write never leaves half a table; Lightning rewrites in place.
Rows are appended (and flushed) one ``log_metrics`` call at a time, as Lightning's logger
connector calls ``save()`` after each, so a kill -9 loses at most the row being written.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from fcnlab.callbacks.checkpoints import checkpoint_iteration

log = logging.getLogger(__name__)


def _replace_atomic(path: str, text: str) -> None:
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class KeepingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps an existing ``metrics.csv`` and extends its header."""

    def _check_log_dir_exists(self) -> None:
        # Lightning deletes metrics.csv here; we keep it and continue its columns instead, so an
        # append never has to rewrite the file (Lightning rewrites when the keys it knows grow).
        self.metrics_keys = self._header()
        if not self.metrics_keys and os.path.isfile(self.metrics_file_path):
            os.remove(self.metrics_file_path)  # empty or a half-written header: nothing to keep

    def _header(self) -> list[str]:
        if not os.path.isfile(self.metrics_file_path):
            return []
        with open(self.metrics_file_path, newline="") as f:
            first = f.readline()
        return next(csv.reader([first]), []) if first.endswith("\n") else []

    def drop_from(self, step: int) -> int:
        """Remove the rows logged at ``step`` or later; return how many lines went.

        A last line without its newline (the process was killed while writing it) goes too: it
        was written after every checkpoint. The file is rewritten, atomically, only when something
        is removed; with no row left it is removed (the next row writes a fresh header).
        """
        if not self.metrics_keys:
            return 0
        with open(self.metrics_file_path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if "step" not in self.metrics_keys:
            raise ValueError(f"{self.metrics_file_path}: no 'step' column in its header "
                             f"{self.metrics_keys}; expected a metrics.csv written by Lightning")
        col = self.metrics_keys.index("step")
        kept = lines[:1] + [line for line in lines[1:] if line.endswith("\n")
                            and int(next(csv.reader([line]))[col]) < step]
        if len(kept) == len(lines):
            return 0
        if len(kept) == 1:
            os.remove(self.metrics_file_path)
            self.metrics_keys = []
        else:
            _replace_atomic(self.metrics_file_path, "".join(kept))
        return len(lines) - len(kept)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning's version truncates the file and then writes: a kill in between loses the
        # table. Same content, written to a temporary file and renamed.
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        _replace_atomic(self.metrics_file_path, out.getvalue())

    def log_hparams(self, params: dict) -> None:
        # hparams.yaml is written again only when it would change: a resumed run with the same
        # config leaves the file (and its mtime) as it was.
        self.hparams.update(params)
        path = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
        tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.tmp"
        save_hparams_to_yaml(tmp, self.hparams)
        if os.path.isfile(path) and Path(path).read_bytes() == Path(tmp).read_bytes():
            os.remove(tmp)
        else:
            os.replace(tmp, path)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` (same arguments) whose ``metrics.csv`` holds every logged step once across
    interruptions and resumes; see the module docstring. Targeted from ``conf/logger/csv.yaml``.
    """

    @property
    @rank_zero_experiment  # other ranks get Lightning's no-op experiment, as with CSVLogger
    def experiment(self) -> KeepingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeepingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_graph(self, model, input_array=None) -> None:
        trainer = getattr(model, "_trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return
        resumed = trainer.ckpt_path
        keep_below = checkpoint_iteration(resumed) if resumed else 0
        dropped = self.experiment.drop_from(keep_below)
        if dropped:
            log.info("%s: %d rows logged at step >= %d removed (%s)",
                     self.experiment.metrics_file_path, dropped, keep_below,
                     f"replayed from {resumed}" if resumed else "the fit starts from scratch")
