"""Epoch-level logs of SegmentationModule are synced across processes; the split's loss does not
depend on how the split is batched or sharded.

``mean`` loss of a split = the loss summed over all its pixels / its non-void pixels (not the mean
of per-batch means); ``sum`` = the summed loss / the number of images. Both are ratios of sums, so
two processes that each sum their shard give the one-process value. The two-process check runs
Lightning's ``ddp_fork`` (gloo, CPU; forked workers start in a second where spawned ones import
everything again) in a subprocess with a hard timeout, so a hang fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fcnlab.data.sampling import ShardSampler
from fcnlab.module import SegmentationModule

K = 4
NUM_IMAGES = 7  # odd: under 2 processes the shards have 4 and 3 images


def make_module(reduction: str = "mean") -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(
        net={"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": K,
             "kernel_size": 1},
        optim={"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}},
        loss={"reduction": reduction}, num_classes=K, class_names=[f"c{i}" for i in range(K)])


def make_split() -> list[dict]:
    """Images whose void share differs (0 % to 60 %), so a mean of per-batch means is wrong."""
    g = torch.Generator().manual_seed(1)
    samples = []
    for i in range(NUM_IMAGES):
        mask = torch.randint(0, K, (12, 16), generator=g)
        mask[: int(12 * i / 10)] = 255
        samples.append({"image": torch.randn(3, 12, 16, generator=g), "mask": mask})
    return samples


def reference_loss(module: SegmentationModule, samples: list[dict]) -> float:
    """The loss of the whole split by its definition, in one sum (no batching at all)."""
    with torch.no_grad():
        images = torch.stack([s["image"] for s in samples])
        masks = torch.stack([s["mask"] for s in samples])
        total = F.cross_entropy(module(images), masks, ignore_index=255, reduction="sum")
    if module.reduction == "sum":
        return float(total / len(samples))
    return float(total / (masks != 255).sum())


def validate(module, loader, **trainer_kwargs) -> dict:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, **trainer_kwargs)
    return trainer.validate(module, dataloaders=loader, verbose=False)[0]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_split_loss_does_not_depend_on_batching(reduction):
    module, samples = make_module(reduction), make_split()
    expected = reference_loss(module, samples)
    for batch_size in (1, 3, NUM_IMAGES):
        got = validate(module, DataLoader(samples, batch_size=batch_size), devices=1)
        assert got["val/loss"] == pytest.approx(expected, rel=1e-5), batch_size
    # What the mean of per-batch means (the old epoch value) would have logged: not the same.
    if reduction == "mean":
        per_image = [reference_loss(module, [s]) for s in samples]
        assert abs(sum(per_image) / len(per_image) - expected) > 1e-3


def test_epoch_level_logs_are_synced_step_logs_are_not(monkeypatch):
    calls = []
    original = L.LightningModule.log

    def spy(self, name, value, *args, **kwargs):
        calls.append((self._current_fx_name, name, kwargs.get("sync_dist", False)))
        return original(self, name, value, *args, **kwargs)

    monkeypatch.setattr(L.LightningModule, "log", spy)  # log_dict calls self.log per key
    module, samples = make_module(), make_split()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=2, val_check_interval=1,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0)
    loader = DataLoader(samples, batch_size=2)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    trainer.test(module, dataloaders=loader, verbose=False)
    epoch_level = [(fx, name, sync) for fx, name, sync in calls if fx != "training_step"]
    names = {name for _, name, _ in epoch_level}
    assert {"val/loss", "val/mean_iou", "val/pixel_acc", "test/loss", "test/fw_iou"} <= names
    assert any(name.startswith("val/iou/") for name in names)
    assert [c for c in epoch_level if not c[2]] == []  # every one carries sync_dist=True
    # The per-step training loss is on purpose not synced (an all-reduce per iteration).
    assert [(n, s) for fx, n, s in calls if fx == "training_step"] == [("train/loss", False)]


def _two_processes(out: Path) -> None:
    """Run in a subprocess: the split's loss on 1 process and on 2 (ddp_spawn, gloo)."""
    module, samples = make_module(), make_split()
    one = validate(module, DataLoader(samples, batch_size=3), devices=1)
    # fcnlab's evaluation loaders shard themselves (ShardSampler: no padded repeats), as
    # conf/trainer/ddp.yaml sets use_distributed_sampler: false.
    loader = DataLoader(samples, batch_size=2, sampler=ShardSampler(len(samples)))
    # A fresh module (the same seeded weights): the first one's metric states were made under
    # inference mode, which a forked worker may not update in place.
    two = validate(make_module(), loader, devices=2, strategy="ddp_fork",
                   use_distributed_sampler=False)
    out.write_text(json.dumps({"reference": reference_loss(module, samples),
                               "one": one, "two": two}))


def test_two_process_val_loss_equals_one_process(tmp_path):
    out = tmp_path / "losses.json"
    subprocess.run([sys.executable, __file__, str(out)], check=True, timeout=120,
                   capture_output=True, cwd=tmp_path)
    result = json.loads(out.read_text())
    for key in ("val/loss", "val/mean_iou", "val/pixel_acc", "val/fw_iou"):
        assert result["two"][key] == pytest.approx(result["one"][key], rel=1e-6), key
    assert result["two"]["val/loss"] == pytest.approx(result["reference"], rel=1e-5)


if __name__ == "__main__":
    _two_processes(Path(sys.argv[1]))
