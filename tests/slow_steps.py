"""A test-only callback that slows training down, so a test can kill a run mid-way."""

import time

import lightning as L


class SleepEachStep(L.Callback):
    def __init__(self, seconds: float = 0.2):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)
