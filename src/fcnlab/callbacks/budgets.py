"""Iteration budgets: one run evaluated and checkpointed at the papers' 40K / 80K / … marks.

The SegNet benchmark (TPAMI 2017, Table 3; docs/reference.md §1) reports every network at 40K and 80K
iterations and at its best point after 80K ("max iter"). Here one run covers all of them:
validation runs every ``trainer.val_check_interval`` iterations, every budget must fall on one
of those evaluations, and at a budget the weights are kept as ``checkpoints/budget-<iter>.ckpt``.
The ">last budget" column is read later from the evaluations after the last budget.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from fcnlab.errors import ConfigError


def check_budgets(budgets, max_steps: int, val_check_interval: int | None) -> list[int]:
    """Budgets as a sorted list of ints that fall on evaluations within the run."""
    if budgets is None:
        return []
    if isinstance(budgets, (str, bytes)) or not hasattr(budgets, "__iter__"):
        raise ConfigError(f"budgets: expected a list of iteration counts, got {budgets!r}")
    out = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
            raise ConfigError(f"budgets: expected positive ints, got {b!r}")
        if b > max_steps:
            raise ConfigError(f"budgets: {b} is beyond trainer.max_steps={max_steps}")
        if val_check_interval and b % val_check_interval:
            raise ConfigError(
                f"budgets: {b} is not a multiple of trainer.val_check_interval="
                f"{val_check_interval}; every budget must fall on an evaluation"
            )
        out.append(b)
    return sorted(set(out))


class BudgetCheckpoints(L.Callback):
    """Save ``budget-<iter>.ckpt`` after the evaluation that lands on each budget."""

    def __init__(self, budgets: list[int], dirpath: str | Path):
        self.budgets = set(budgets)
        self.dirpath = Path(dirpath)
        # Budgets already passed before a resume keep their checkpoints.
        self.saved: dict[int, str] = {
            int(p.stem.split("-")[1]): str(p) for p in self.dirpath.glob("budget-*.ckpt")
            if int(p.stem.split("-")[1]) in self.budgets
        }

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        # Whether a budget is saved decides a call every rank must make together
        # (trainer.save_checkpoint ends in a barrier), so every rank takes rank 0's list of the
        # files already there rather than its own look at the folder.
        self.saved = trainer.strategy.broadcast(self.saved, src=0)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or step not in self.budgets or step in self.saved:
            return
        path = self.dirpath / f"budget-{step:06d}.ckpt"
        trainer.save_checkpoint(path, weights_only=False)
        self.saved[step] = str(path)
