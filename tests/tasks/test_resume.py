"""Reliability: a killed run resumes into the same run; SIGTERM, damaged checkpoints, NaN, seeds.

The kill tests run ``train.py`` as a subprocess (as a user or a cluster would), slowed down by a
test-only callback so it can be killed with SIGKILL after a mid-epoch checkpoint, then re-run the
same command with ``resume=auto`` and compare with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.module import NonFiniteLossError
from fcnlab.callbacks.checkpoints import newest_checkpoint, resolve_resume
from fcnlab.tasks.train import train
from fcnlab.module import SegmentationModule

ROOT = Path(__file__).resolve().parents[2]
# 16 training images, batch 4: 4 iterations an epoch; checkpoints every 3 iterations fall
# mid-epoch (3 = epoch 0 batch 3, 6 = epoch 1 batch 2, 9 = epoch 2 batch 1).
RUN = ["debug=fast", "data.datamodule.num_train=16", "data.datamodule.batch_size=4",
       "trainer.max_steps=12", "trainer.val_check_interval=3"]
SLOW = ["+callbacks.sleep._target_=slow_steps.SleepEachStep", "+callbacks.sleep.seconds=0.4"]


def _cmd(tmp: Path, data_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *RUN, f"paths.log_dir={tmp}",
            f"paths.data_dir={data_dir}", *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def _run_dir(tmp: Path) -> Path:
    (run,) = [p for p in (tmp / "train" / "runs").iterdir() if p.is_dir()]
    return run


def _final(run: Path) -> tuple[dict, dict]:
    record = json.loads((run / "results.json").read_text())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return record, ckpt["state_dict"]


@pytest.fixture(scope="module")
def data_dir_module(tmp_path_factory):
    return tmp_path_factory.mktemp("resume-data")


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, data_dir_module, workers):
    extra = [f"data.datamodule.num_workers={workers}", "resume=auto"]
    # The uninterrupted run.
    subprocess.run(_cmd(tmp_path / "a", data_dir_module, extra), check=True, env=_env(),
                   cwd=ROOT, capture_output=True)
    # The interrupted run: killed right after its iteration-6 checkpoint (mid-epoch 1).
    cmd = _cmd(tmp_path / "b", data_dir_module, extra + SLOW)
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    target = None
    while time.time() < deadline and proc.poll() is None:
        runs = list((tmp_path / "b" / "train" / "runs").glob("*/checkpoints/iter000006.ckpt"))
        if runs:
            target = runs[0]
            break
        time.sleep(0.05)
    assert target is not None, "the run never wrote its iteration-6 checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record_b = json.loads((target.parent.parent / "results.json").read_text())
    assert record_b["status"] == "running"  # killed: no chance to say anything else
    # The same command again: continues from the newest complete checkpoint.
    subprocess.run(cmd, check=True, env=_env(), cwd=ROOT, capture_output=True)
    rec_a, w_a = _final(_run_dir(tmp_path / "a"))
    rec_b, w_b = _final(_run_dir(tmp_path / "b"))
    assert rec_b["status"] == "finished" and rec_b["resumed_from"]["iteration"] >= 6
    assert [e["iteration"] for e in rec_b["evaluations"]] == [3, 6, 9, 12]
    for key in w_a:
        assert torch.equal(w_a[key], w_b[key]), key
    for ea, eb in zip(rec_a["evaluations"], rec_b["evaluations"]):
        assert ea["confmat"] == eb["confmat"] and ea["mean_iou"] == eb["mean_iou"]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, data_dir_module):
    cmd = _cmd(tmp_path, data_dir_module, ["resume=auto"] + SLOW)
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "train" / "runs").glob(
            "*/checkpoints/iter000003.ckpt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    run = _run_dir(tmp_path)
    assert (run / "checkpoints" / "interrupted.ckpt").is_file()
    record = json.loads((run / "results.json").read_text())
    assert record["status"] == "interrupted" and "resume=auto" in record["error"]
    # And the run continues from there to the end.
    subprocess.run(cmd, check=True, env=_env(), cwd=ROOT, capture_output=True)
    assert json.loads((run / "results.json").read_text())["status"] == "finished"


def test_truncated_newest_checkpoint_is_skipped(tmp_path, data_dir):
    cfg = compose_cfg("train", ["trainer.max_steps=4"], tmp_path, data_dir=data_dir)
    train(cfg)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    good = newest_checkpoint(ckpt_dir)
    broken = ckpt_dir / "iter999999.ckpt"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    os.utime(broken, (time.time() + 10, time.time() + 10))  # the newest file
    assert newest_checkpoint(ckpt_dir) != broken
    assert resolve_resume("auto", ckpt_dir) == str(newest_checkpoint(ckpt_dir))
    with pytest.raises(ConfigError, match="truncated or damaged"):
        resolve_resume(str(broken), ckpt_dir)


def test_missing_resume_path_names_it(tmp_path):
    with pytest.raises(ConfigError, match="/no/such.ckpt"):
        resolve_resume("/no/such.ckpt", tmp_path)


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    assert resolve_resume("auto", tmp_path / "nothing-here") is None


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        SegmentationModule.from_checkpoint(path)
    from fcnlab.callbacks.checkpoints import AtomicCheckpointIO

    with pytest.raises(ConfigError, match="weights_only"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_same_seed_identical_different_seed_different(tmp_path, data_dir):
    def weights(sub: str, seed: int) -> dict:
        cfg = compose_cfg("train", [f"seed={seed}", "trainer.max_steps=4"], tmp_path / sub,
                          data_dir=data_dir)
        train(cfg)
        return torch.load(tmp_path / sub / "run" / "checkpoints" / "last.ckpt",
                          weights_only=True)["state_dict"]

    a, b, c = weights("a", 1), weights("b", 1), weights("c", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_nan_loss_stops_with_iteration_and_samples(tmp_path, data_dir, monkeypatch):
    from fcnlab.module import SegmentationModule

    original = SegmentationModule.loss

    def poisoned(self, logits, target):
        loss = original(self, logits, target)
        return loss * float("nan") if self.global_step == 2 else loss

    monkeypatch.setattr(SegmentationModule, "loss", poisoned)
    cfg = compose_cfg("train", ["trainer.max_steps=4"], tmp_path, data_dir=data_dir)
    with pytest.raises(NonFiniteLossError, match=r"iteration 3, batch of samples \['train_"):
        train(cfg)
    run = tmp_path / "run"
    assert (run / "checkpoints" / "iter000002.ckpt").is_file()  # the last good state is kept
    record = json.loads((run / "results.json").read_text())
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]


def test_all_void_batch_gives_zero_loss():
    from fcnlab.module import SegmentationModule

    module = SegmentationModule(
        net={"_target_": "fcnlab.models.FCN", "num_classes": 3, "variant": "32s",
             "width": 0.0625},
        optim={}, loss={"reduction": "mean"}, num_classes=3, class_names=["a", "b", "c"])
    logits = torch.randn(2, 3, 5, 7, requires_grad=True)
    target = torch.full((2, 5, 7), 255)
    loss = module.loss(logits, target)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_augmentation_depends_on_seed_epoch_and_sample_only(tmp_path, data_dir):
    """The training loader's augmented batches are the same with 0 or 2 workers, and a loader
    restored mid-epoch from its state yields exactly the remaining batches of that epoch."""
    from fcnlab.data import SyntheticDataModule

    def loader(workers: int):
        dm = SyntheticDataModule(data_dir, image_size=(40, 56), num_train=16, num_val=6,
                                 num_test=6, batch_size=4, num_workers=workers,
                                 augment={"scale": [0.5, 1.5], "crop": [32, 32], "hflip": True})
        dm.prepare_data()
        dm.setup("fit")
        return dm.train_dataloader()

    def epochs(dl, n: int) -> list[torch.Tensor]:
        out = []
        for _ in range(n):
            out += [b["image"] for b in dl]
        return out

    plain, threaded = epochs(loader(0), 2), epochs(loader(2), 2)
    assert all(torch.equal(a, b) for a, b in zip(plain, threaded))
    assert not torch.equal(plain[0], plain[4])  # epoch 2 is not epoch 1 again
    resumed = loader(0)
    resumed.load_state_dict({"epoch": 1, "batches": 2})
    rest = [b["image"] for b in resumed]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(rest, plain[6:8]))
