"""Progress for both kinds of output: a Rich bar on a terminal, plain lines in a log file.

A cluster job's log is not a terminal: a progress bar there is a stream of carriage returns.
When stdout is not a TTY, the bar is switched off and :class:`PlainProgress` prints one line
every ``every`` iterations instead (iteration, loss, speed, time left).
"""

from __future__ import annotations

import sys
import time

import lightning as L


def is_interactive() -> bool:
    return sys.stdout.isatty()


class PlainProgress(L.Callback):
    """``iter 200/800  loss 0.5312  3.1 it/s  eta 3m12s`` every ``every`` iterations."""

    def __init__(self, every: int = 50):
        self.every = max(1, int(every))
        self._t0 = self._step0 = None

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._t0, self._step0 = time.time(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every or trainer.global_rank:
            return
        done = step - self._step0
        rate = done / max(time.time() - self._t0, 1e-9)
        left = (trainer.max_steps - step) / rate if rate > 0 and trainer.max_steps > 0 else 0
        loss = trainer.callback_metrics.get("train/loss")
        loss_txt = f"  loss {float(loss):.4f}" if loss is not None else ""
        print(f"iter {step}/{trainer.max_steps}{loss_txt}  {rate:.2f} it/s  "
              f"eta {int(left // 60)}m{int(left % 60):02d}s", flush=True)
