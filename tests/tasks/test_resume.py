"""Reliability: a killed run resumes into the same run; SIGTERM, damaged checkpoints, NaN, seeds.

The kill tests run ``train.py`` as a subprocess (as a user or a cluster would), slowed down by a
test-only callback so it can be killed with SIGKILL after a mid-epoch checkpoint, then re-run the
same command with ``resume=auto`` and compare with an uninterrupted run: the weights, the
evaluations, ``csv/metrics.csv`` (every step once: the rows before the checkpoint kept byte for
byte, the replayed ones not doubled) and ``train.log`` (appended, each attempt's start marked).
A re-run of the finished command changes no file of the run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
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
       "trainer.max_steps=12", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1"]
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


def _csv_steps(text: str) -> list[int]:
    """The ``step`` of every complete row of a metrics.csv text."""
    complete = text[: text.rfind("\n") + 1]
    return [int(r["step"]) for r in csv.DictReader(io.StringIO(complete))]


def _table(run: Path) -> tuple[list[int], list[int]]:
    """The steps of metrics.csv's train rows and of its validation rows."""
    with open(run / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return ([int(r["step"]) for r in rows if r["train/loss"]],
            [int(r["step"]) for r in rows if r["val/mean_iou"]])


def _files(run: Path) -> dict[str, tuple[int | None, bytes]]:
    """Every file of a run folder: (mtime, bytes). Hydra rewrites its copy of the composed config
    (.hydra/*.yaml) at every job start, before any fcnlab code runs (hydra.core.utils.run_job,
    `_save_config`), so only their bytes count."""
    return {str(p.relative_to(run)): (None if p.parts[len(run.parts)] == ".hydra"
                                      else p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run.rglob("*")) if p.is_file()}


# Two loader workers: the same guarantee with worker processes, kept in `make test-slow` (~45 s);
# the default suite runs the in-process loader.
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, data_dir_module, workers):
    extra = [f"data.datamodule.num_workers={workers}", "resume=auto"]
    # The uninterrupted run.
    subprocess.run(_cmd(tmp_path / "a", data_dir_module, extra), check=True, env=_env(),
                   cwd=ROOT, capture_output=True, timeout=300)
    # The interrupted run: killed after its iteration-6 checkpoint (mid-epoch 1), once it has
    # logged a row of a later iteration (what the resumed run replays); the sleep leaves ~1.2 s
    # before the iteration-9 checkpoint.
    cmd = _cmd(tmp_path / "b", data_dir_module, extra + SLOW)
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    target = None
    while time.time() < deadline and proc.poll() is None:
        runs = list((tmp_path / "b" / "train" / "runs").glob("*/checkpoints/iter000006.ckpt"))
        metrics = runs[0].parent.parent / "csv" / "metrics.csv" if runs else None
        if metrics and metrics.is_file() and max(_csv_steps(metrics.read_text()), default=0) >= 6:
            target = runs[0]
            break
        time.sleep(0.05)
    assert target is not None, "the run never wrote its iteration-6 checkpoint and a row after it"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run_b = target.parent.parent
    record_b = json.loads((run_b / "results.json").read_text())
    assert record_b["status"] == "running"  # killed: no chance to say anything else
    csv_killed = (run_b / "csv" / "metrics.csv").read_bytes()
    log_killed = (run_b / "train.log").read_bytes()
    # The same command again: continues from the newest complete checkpoint.
    subprocess.run(cmd, check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=300)
    rec_a, w_a = _final(_run_dir(tmp_path / "a"))
    rec_b, w_b = _final(run_b)
    resumed_at = rec_b["resumed_from"]["iteration"]
    assert rec_b["status"] == "finished" and resumed_at >= 6
    assert [e["iteration"] for e in rec_b["evaluations"]] == [3, 6, 9, 12]
    for key in w_a:
        assert torch.equal(w_a[key], w_b[key]), key
    for ea, eb in zip(rec_a["evaluations"], rec_b["evaluations"]):
        assert ea["confmat"] == eb["confmat"] and ea["mean_iou"] == eb["mean_iou"]

    # metrics.csv: each iteration's train row once, each evaluation's row once (logged at step
    # iteration - 1), and the same table as the uninterrupted run's, byte for byte.
    assert any(s >= resumed_at for s in _csv_steps(csv_killed.decode()))  # a replay was needed
    assert _table(run_b) == (list(range(12)), [2, 5, 8, 11])
    csv_b = (run_b / "csv" / "metrics.csv").read_bytes()
    assert csv_b == (_run_dir(tmp_path / "a") / "csv" / "metrics.csv").read_bytes()
    # The rows the killed attempt logged before its checkpoint are kept as they were.
    kept = 1 + sum(s < resumed_at for s in _csv_steps(csv_killed.decode()))
    assert csv_b.splitlines()[:kept] == csv_killed.splitlines()[:kept]
    # train.log: appended, never rewritten; the resumed attempt says where it starts and that
    # what the killed one logged after that iteration is replayed.
    log_b = (run_b / "train.log").read_bytes()
    assert log_b.startswith(log_killed) and len(log_b) > len(log_killed)
    assert re.search(rb"continuing from \S+ at iteration %d: anything logged above after "
                     rb"iteration %d is replayed below" % (resumed_at, resumed_at),
                     log_b[len(log_killed):])
    assert log_b.count(log_killed.splitlines()[0]) == 1

    if workers == 0:  # once is enough: a re-run of the finished command changes nothing
        before = _files(run_b)
        subprocess.run(cmd, check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=300)
        assert _files(run_b) == before


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
    # And the run continues from there to the end, every iteration and evaluation logged once.
    subprocess.run(cmd, check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=300)
    assert json.loads((run / "results.json").read_text())["status"] == "finished"
    # Each iteration's row once, each evaluation's once. (Not the steps 0..11 of an uninterrupted
    # run: after a resume from interrupted.ckpt Lightning numbers the rows one step later, as the
    # counter it logs with, `_batches_that_stepped`, is saved already incremented there and is
    # incremented again on restart; see the SIGKILL test for a resume from a regular checkpoint.)
    train_steps, val_steps = _table(run)
    assert len(train_steps) == 12 and train_steps == sorted(set(train_steps))
    assert len(val_steps) == 4 and val_steps == sorted(set(val_steps))


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
