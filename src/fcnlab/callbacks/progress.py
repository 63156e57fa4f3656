"""Progress for both kinds of output: a Rich bar on a terminal, plain lines in a log file.

A cluster job's log is not a terminal: a progress bar there is a stream of carriage returns.
When stdout is not a TTY, the trainer's bar is switched off (``fcnlab.tasks.trainer``) and
:class:`PlainProgress` (conf/callbacks/plain_progress.yaml) prints one line every ``every``
iterations instead (iteration, loss, speed, time left). It prints whenever the trainer shows no
bar, so ``trainer.enable_progress_bar=false`` on a terminal gives the plain lines too.

Loops outside Lightning's (data checks, BN recompute, class weights, synthetic data, the lines
of ``predict.py``) use :mod:`fcnlab.progress`, which makes the same terminal test.
"""

from __future__ import annotations

import time

import lightning as L

from fcnlab.errors import ConfigError
from fcnlab.progress import is_interactive  # noqa: F401  (one test of "a terminal" for all jobs)

DEFAULT_EVERY = 50  # Lightning's own default for log_every_n_steps


class PlainProgress(L.Callback):
    """``iter 200/800  loss 0.5312  3.1 it/s  eta 3m12s`` every ``every`` iterations (``None``:
    every 50), when the trainer shows no progress bar."""

    def __init__(self, every: int | None = DEFAULT_EVERY):
        if every is None:
            every = DEFAULT_EVERY
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"callbacks.plain_progress.every: expected an int >= 1 "
                              f"(iterations), got {every!r}")
        self.every = every
        self._t0 = self._step0 = None
        self._active = False

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._active = trainer.progress_bar_callback is None
        self._t0, self._step0 = time.time(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if not self._active or step % self.every or trainer.global_rank:
            return
        done = step - self._step0
        rate = done / max(time.time() - self._t0, 1e-9)
        left = (trainer.max_steps - step) / rate if rate > 0 and trainer.max_steps > 0 else 0
        loss = trainer.callback_metrics.get("train/loss")
        loss_txt = f"  loss {float(loss):.4f}" if loss is not None else ""
        print(f"iter {step}/{trainer.max_steps}{loss_txt}  {rate:.2f} it/s  "
              f"eta {int(left // 60)}m{int(left % 60):02d}s", flush=True)
