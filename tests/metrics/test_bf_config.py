"""BF's configuration: options and presets, conf/train.yaml's defaults, and
``metrics.boundary.every``, which evaluations of a training run compute BF (module side):
``interval`` every validation; ``budgets`` only the validations at an iteration budget and at
``trainer.max_steps``, and a validate / test run outside training always. The definition of BF is
the same either way (tests/metrics/test_boundary_script.py).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from fcnlab.callbacks.budgets import BudgetCheckpoints
from fcnlab.errors import ConfigError
from fcnlab.metrics.boundary import PRESETS, BoundaryF1, boundary_f1_stats
from fcnlab.module import SegmentationModule

K = 3


def test_options_presets_and_errors():
    assert BoundaryF1(3).options == PRESETS["segnet_script"]
    assert BoundaryF1(3, preset="fcnlab_v1").options == PRESETS["fcnlab_v1"]
    mixed = BoundaryF1(3, preset="fcnlab_v1", matching="one_to_one").options
    assert mixed == {**PRESETS["fcnlab_v1"], "matching": "one_to_one"}
    with pytest.raises(ValueError, match=r"matching='greedy' is not one of \['one_to_one', "
                                         r"'within_tolerance'\]"):
        BoundaryF1(3, matching="greedy")
    with pytest.raises(ValueError, match=r"void='ignore' is not one of \['mask_pred', 'raw'\]"):
        BoundaryF1(3, void="ignore")
    with pytest.raises(ValueError, match=r"preset='v0' is not one of"):
        BoundaryF1(3, preset="v0")
    with pytest.raises(ValueError, match=r"tolerance=-1"):
        BoundaryF1(3, tolerance=-1)
    with pytest.raises(ValueError, match=r"\['matchng'\] do not exist"):
        boundary_f1_stats(torch.zeros(1, 4, 4).long(), torch.zeros(1, 4, 4).long(), 2,
                          matchng="one_to_one")


def test_train_config_defaults_are_the_script():
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "train.yaml")
    boundary = OmegaConf.to_container(cfg.metrics.boundary)
    assert boundary.pop("every") == "interval"
    metric = BoundaryF1(11, **boundary)
    assert metric.options == PRESETS["segnet_script"] and metric.tolerance == 0.0075
    assert cfg.metrics.mean_over == "union_present"  # FCN score.py: tests/metrics/test_metrics.py


# --------------------------------------------------------------------------- every
def make_module(every: str) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(
        net={"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": K,
             "kernel_size": 1},
        optim={"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}},
        loss={"reduction": "mean"}, num_classes=K, class_names=[f"c{i}" for i in range(K)],
        metrics={"mean_over": "union_present",
                 "boundary": {"preset": "segnet_script", "tolerance": 0.1, "every": every}})


def samples(n: int = 8) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        mask = torch.zeros(12, 16, dtype=torch.long)
        mask[:, 8:] = 1
        mask[2:6, 2:6] = 2
        out.append({"image": torch.randn(3, 12, 16, generator=g), "mask": mask})
    return out


class Seen(L.Callback):
    """The iterations whose validation logged BF, and those that did not."""

    def __init__(self):
        self.with_bf, self.without_bf = [], []

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        (self.with_bf if "bf" in module.last_scores["val"] else self.without_bf).append(
            trainer.global_step)


def fit(every: str, tmp_path) -> Seen:
    seen = Seen()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, max_steps=6,
                        val_check_interval=2, check_val_every_n_epoch=None,
                        num_sanity_val_steps=1,
                        callbacks=[BudgetCheckpoints([2], tmp_path), seen])
    loader = DataLoader(samples(), batch_size=1)
    trainer.fit(make_module(every), loader, DataLoader(samples(3), batch_size=3))
    return seen


@pytest.mark.parametrize("every,with_bf,without_bf", [
    ("interval", [2, 4, 6], []),
    ("budgets", [2, 6], [4]),  # budget 2 and the last iteration (max_steps 6)
])
def test_bf_is_computed_when_due(every, with_bf, without_bf, tmp_path):
    seen = fit(every, tmp_path)
    assert (seen.with_bf, seen.without_bf) == (with_bf, without_bf)


def test_validate_outside_training_always_computes_bf():
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    out = trainer.validate(make_module("budgets"), DataLoader(samples(3), batch_size=3),
                           verbose=False)[0]
    assert "val/bf" in out and 0.0 <= out["val/bf"] <= 1.0


def test_bad_every_and_bad_option_are_config_errors():
    with pytest.raises(ConfigError, match="metrics.boundary.every"):
        make_module("sometimes")
    with pytest.raises(ConfigError, match=r"metrics.boundary: .*draw='thin'"):
        SegmentationModule(
            net={"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": K,
                 "kernel_size": 1},
            optim={"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}},
            loss={}, num_classes=K, class_names=["a", "b", "c"],
            metrics={"boundary": {"draw": "thin"}})
