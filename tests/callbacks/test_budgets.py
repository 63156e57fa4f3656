"""Budgets: one run evaluated and checkpointed at each iteration budget."""

from __future__ import annotations

import pytest
import torch

from conftest import compose_cfg
from fcnlab.callbacks.budgets import check_budgets
from fcnlab.errors import ConfigError
from fcnlab.tasks.train import train


def test_budget_checkpoints_hold_the_weights_of_that_iteration(tmp_path, data_dir):
    cfg = compose_cfg("train", ["budgets=[2,4]", "trainer.max_steps=6"], tmp_path,
                      data_dir=data_dir)
    record = train(cfg)
    assert record["budgets"] == [2, 4]
    assert [e["iteration"] for e in record["evaluations"]] == [2, 4, 6]
    for step, path in record["checkpoints"]["budgets"].items():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert ckpt["global_step"] == int(step)
    assert set(record["checkpoints"]["budgets"]) == {"2", "4"}


@pytest.mark.parametrize("budgets, message", [
    ([3], "multiple of trainer.val_check_interval"),
    ([8], "beyond trainer.max_steps"),
    (["40K"], "positive ints"),
    ("40000", "a list"),
])
def test_bad_budgets(budgets, message):
    with pytest.raises(ConfigError, match=message):
        check_budgets(budgets, max_steps=6, val_check_interval=2)
