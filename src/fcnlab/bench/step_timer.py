"""A training callback that times each iteration and keeps the training loss, for the GPU check.

``python train.py`` writes its evaluations to ``results.json`` but neither its iteration rate
nor its per-step loss (the CSV log has the loss every ``log_every_n_steps`` only). The GPU check
(:mod:`fcnlab.bench.gpu_check`) adds this callback from the command line
(``+callbacks.gpu_check_steps._target_=fcnlab.bench.step_timer.StepTimer``), so the training run
it measures is the plain ``train.py`` with one extra observer and no other change.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L


class StepTimer(L.Callback):
    """Wall time at the end of every training iteration and that iteration's loss, written to
    ``path`` (JSON) every ``every`` iterations and at the end, so a run stopped by a timeout
    still leaves what it measured.

    The rate is ``1 / median`` of the intervals between consecutive iteration ends after the
    first ``skip`` ones (cuDNN's algorithm search, compilation and the loader's start fall
    there). The median also keeps the interval that holds an evaluation out of the rate;
    ``iters_per_s_mean`` (every interval after ``skip``, evaluations included) is written too.
    The module's training step already waits for its loss (the finite-loss check), so reading
    it here adds no synchronisation.
    """

    def __init__(self, path: str, skip: int = 5, every: int = 50):
        self.path = Path(path)
        self.skip = int(skip)
        self.every = int(every)
        self.ends: list[float] = []
        self.losses: list[float] = []
        self.batch_size: int | None = None
        self.fit_start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.fit_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self.ends.append(time.perf_counter())
        self.losses.append(float(loss) if loss is not None else float("nan"))
        if self.batch_size is None and isinstance(batch, Mapping) and "image" in batch:
            self.batch_size = int(batch["image"].shape[0])
        if trainer.is_global_zero and len(self.ends) % self.every == 0:
            self.write()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.write()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if trainer.is_global_zero:
            self.write(error=f"{type(exception).__name__}: {exception}")

    def summary(self) -> dict:
        n = len(self.ends)
        out: dict = {"iterations": n, "batch_size": self.batch_size, "skip": self.skip}
        if self.fit_start is not None and n:
            out["first_iteration_s"] = self.ends[0] - self.fit_start
        gaps = [b - a for a, b in zip(self.ends[self.skip:], self.ends[self.skip + 1:])]
        if gaps:
            step = statistics.median(gaps)
            out["step_s_median"] = step
            out["iters_per_s"] = 1 / step
            out["iters_per_s_mean"] = len(gaps) / (self.ends[-1] - self.ends[self.skip])
            if self.batch_size:
                out["images_per_s"] = self.batch_size / step
        if self.losses:
            tail = self.losses[-10:]
            out["final_loss"] = self.losses[-1]
            out["final_loss_mean_last_10"] = sum(tail) / len(tail)
            out["first_loss"] = self.losses[0]
            out["loss_every_10"] = self.losses[::10]
        return out

    def write(self, **extra) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**self.summary(), **extra}, indent=2) + "\n")
        os.replace(tmp, self.path)
