"""logger=wandb: offline, one wandb run per job for every task, closed at the job's end, named by
what differs between jobs; a resumed run continues its wandb run; void keeps its own mask label.

What a run recorded is read back from its offline transaction log (``<run>/wandb/offline-run-*/
run-<id>.wandb``): the run record (id, name, group, job type, tags) and the exit record written
by ``finish()``; a run without one was never closed. The in-process tests run under the suite's
network guard: an offline wandb run must not open a connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.types import RunMode
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf, open_dict, read_write
from PIL import Image

from conftest import ROOT, compose_cfg
from fcnlab.callbacks.wandb_media import VOID_NAME, mask_layers
from fcnlab.tasks.evaluate import evaluate
from fcnlab.tasks.train import train
from fcnlab.tasks.trainer import build_trainer
from fcnlab.tasks.wandb_runs import WANDB_ID_FILE, closing_loggers, wandb_run_args

pytest.importorskip("wandb", reason='needs the loggers extra: pip install "fcnlab[loggers]"')
from wandb.proto import wandb_internal_pb2  # noqa: E402

TINY = ["trainer.max_steps=2", "trainer.val_check_interval=2"]


# --------------------------------------------------------------------------- reading runs
def _records(path: Path):
    """The records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    protobuf ``Record`` messages in LevelDB's log format (32 KiB blocks; chunks with a 7-byte
    header: CRC, little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4;
    https://github.com/google/leveldb/blob/main/doc/log_format.md)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0:  # zero-filled (preallocated) space: the end
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def runs_in(run_dir: Path) -> list[dict]:
    """Every offline wandb run under ``<run_dir>/wandb``: its id, name, group, job type, tags,
    exit code (None: never closed) and the merged config."""
    found = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        info = {"folder": folder, "exit_code": None, "config": {}}
        for record in _records(next(folder.glob("*.wandb"))):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                info.update(id=r.run_id, name=r.display_name, group=r.run_group,
                            job_type=r.job_type, tags=list(r.tags))
            elif kind == "exit":
                info["exit_code"] = record.exit.exit_code
            elif kind == "config":
                info["config"].update({u.key: json.loads(u.value_json)
                                       for u in record.config.update})
        found.append(info)
    return found


def _nodes(tree):
    """Every dict in a JSON tree (wandb nests its own config entries variously)."""
    if isinstance(tree, dict):
        yield tree
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            yield from _nodes(item)


@pytest.fixture(scope="module")
def wandb_env(tmp_path_factory):
    """Offline wandb with every folder it writes under a temporary one."""
    root = tmp_path_factory.mktemp("wandb_home")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root / "dir"),
           "WANDB_CONFIG_DIR": str(root / "config"), "WANDB_CACHE_DIR": str(root / "cache"),
           "WANDB_DATA_DIR": str(root / "data")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


# --------------------------------------------------------------------------- train + resume
@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data_dir, wandb_env):
    """A 2-iteration train run with wandb, continued to 4 by resume=auto (same folder), then to
    6 by resume=<its last.ckpt> from another folder: three train() calls in one process, as a
    multirun's jobs are."""
    tmp = tmp_path_factory.mktemp("resume")
    cfgs = [compose_cfg("train", ["logger=wandb", "resume=auto", *TINY], tmp / "a",
                        data_dir=data_dir),
            compose_cfg("train", ["logger=wandb", "resume=auto", "trainer.max_steps=4",
                                  "trainer.val_check_interval=2"], tmp / "a", data_dir=data_dir)]
    for cfg in cfgs:
        train(cfg)
    first = tmp / "a" / "run"
    train(compose_cfg("train", ["logger=wandb", f"resume={first}/checkpoints/last.ckpt",
                                "trainer.max_steps=6", "trainer.val_check_interval=2"],
                      tmp / "b", data_dir=data_dir))
    return first, tmp / "b" / "run"


def test_resume_continues_the_wandb_run(resumed):
    first, other = resumed
    runs = runs_in(first)
    # Two jobs in this folder, each its own closed offline run (a job left open would have
    # been reused by the next one: one folder), both the same wandb run.
    assert len(runs) == 2, [r["folder"].name for r in runs]
    assert [r["exit_code"] for r in runs] == [0, 0]
    run_id = (first / WANDB_ID_FILE).read_text().strip()
    assert {r["id"] for r in runs} == {run_id}
    assert all(r["job_type"] == "train" and r["name"] == "fcn8s,seed=0" for r in runs)
    # resume=<ckpt> from another folder continues the checkpoint's run too, and keeps its id.
    (moved,) = runs_in(other)
    assert moved["id"] == run_id and moved["exit_code"] == 0
    assert (other / WANDB_ID_FILE).read_text().strip() == run_id


def test_train_run_content_and_void_label(resumed):
    first, _ = resumed
    run = runs_in(first)[0]
    data = next(run["folder"].glob("*.wandb")).read_bytes()
    for key in (b"val/mean_iou", b"val/bf", b"val/iou_per_class", b"val/predictions"):
        assert key in data, key
    assert list((run["folder"] / "files" / "media" / "table").rglob("*.table.json"))
    # CSV logging stays on beside wandb: records never depend on it.
    assert (first / "csv" / "metrics.csv").is_file()
    # The true masks keep void (the synthetic data has a void band between classes) under its
    # own label: wandb keeps each mask layer's labels in the run config (mask/class_labels).
    labels = {node["key"]: node["value"] for node in _nodes(run["config"]["_wandb"])
              if node.get("type") == "mask/class_labels"}
    truth = next(v for k, v in labels.items() if k.endswith("ground_truth"))
    pred = next(v for k, v in labels.items() if k.endswith("prediction"))
    assert truth["255"] == VOID_NAME and "255" not in pred
    masks = [np.asarray(Image.open(p)) for p in
             (run["folder"] / "files" / "media" / "images" / "mask").rglob("*.png")]
    assert any((m == 255).any() for m in masks), "no void pixel in any logged mask"


def test_mask_layers_keep_void():
    truth = np.array([[0, 255], [2, 1]])
    pred = np.array([[0, 1], [2, 1]])
    layers = mask_layers(pred, truth, ["background", "a", "b"], ignore_index=255)
    gt = layers["ground_truth"]
    assert gt["mask_data"].tolist() == [[0, 255], [2, 1]]  # not painted as background (0)
    assert gt["class_labels"][255] == VOID_NAME and gt["class_labels"][0] == "background"
    assert 255 not in layers["prediction"]["class_labels"]
    with pytest.raises(ValueError, match="ignore_index 1 is also the id of class 'a'"):
        mask_layers(pred, truth, ["background", "a", "b"], ignore_index=1)


# --------------------------------------------------------------------------- eval, pretrain
def test_eval_and_pretrain_close_their_runs(resumed, tmp_path, data_dir, wandb_env):
    first, _ = resumed
    cfg = compose_cfg("eval", ["logger=wandb", f"ckpt_path={first}/checkpoints/last.ckpt"],
                      tmp_path / "eval", data_dir=data_dir, debug=None)
    evaluate(cfg)
    (run,) = runs_in(tmp_path / "eval" / "run")
    assert (run["job_type"], run["exit_code"], run["name"]) == ("eval", 0, "fcn8s")
    cfg = compose_cfg("train", ["model=vgg16_classifier", "logger=wandb", *TINY],
                      tmp_path / "pretrain", data_dir=data_dir)
    train(cfg)  # task: pretrain
    (run,) = runs_in(tmp_path / "pretrain" / "run")
    assert (run["job_type"], run["exit_code"]) == ("pretrain", 0)
    assert run["name"] == "vgg16_classifier,seed=0"


def test_a_failed_job_closes_its_run_as_failed(tmp_path, data_dir, wandb_env):
    cfg = compose_cfg("train", ["logger=wandb"], tmp_path, data_dir=data_dir)
    trainer = build_trainer(cfg)
    (logger,) = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    with pytest.raises(RuntimeError, match="boom"), closing_loggers(trainer):
        logger.experiment.log({"x": 1})  # the run starts
        raise RuntimeError("boom")
    (run,) = runs_in(tmp_path / "run")
    assert run["exit_code"] == 1
    import wandb

    assert wandb.run is None  # nothing left open for the next job


# --------------------------------------------------------------------------- names
def test_names_say_what_the_sweep_varies(tmp_path):
    """Name and group of a sweep's job, from the sweep's own multirun.yaml (what Hydra's basic
    sweeper saves) and the job's overrides; no training."""
    sweep = tmp_path / "logs" / "train" / "multiruns" / "stamp"
    sweep.mkdir(parents=True)
    OmegaConf.save({"hydra": {"overrides": {"task": ["debug=fast", "logger=wandb",
                                                     "optim=sgd,adam", "seed=0,1"]}}},
                   sweep / "multirun.yaml")
    cfg = compose_cfg("train", ["logger=wandb", "optim=adam", "seed=1", "scale=paper"],
                      tmp_path, keep_hydra=True)
    from hydra.core.hydra_config import HydraConfig

    with read_write(cfg.hydra), open_dict(cfg.hydra):  # Hydra's own config is read-only
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(sweep)
        cfg.hydra.overrides.task = ["debug=fast", "logger=wandb", "optim=adam", "seed=1"]
    HydraConfig.instance().set_config(cfg)
    args = wandb_run_args(cfg)
    assert args["name"] == "fcn8s,optim=adam,seed=1"  # debug and logger do not vary
    assert args["group"] == "train/multiruns/stamp"
    assert args["tags"] == ["paper"]
    assert len(args["id"]) == 8


# --------------------------------------------------------------------------- a real multirun
@pytest.mark.slow
def test_multirun_leaves_one_closed_run_per_job(tmp_path, data_dir, wandb_env):
    """``train.py -m ... seed=0,1,2``: three jobs, three closed runs, named by their seed,
    grouped by the sweep. About 50 s on the 2-core development CPU (slow-marked)."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "debug=fast", "logger=wandb",
           "seed=0,1,2", *TINY, f"paths.log_dir={tmp_path / 'logs'}",
           f"paths.data_dir={data_dir}", "hydra.sweep.dir=" + str(tmp_path / "logs" / "sweep")]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **wandb_env}, capture_output=True,
                          text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "logs" / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 3, jobs
    runs = [runs_in(job) for job in jobs]
    assert [len(r) for r in runs] == [1, 1, 1]
    runs = [r[0] for r in runs]
    assert [r["exit_code"] for r in runs] == [0, 0, 0]
    assert [r["name"] for r in runs] == ["fcn8s,seed=0", "fcn8s,seed=1", "fcn8s,seed=2"]
    assert {r["group"] for r in runs} == {"sweep"}
    assert {r["job_type"] for r in runs} == {"train"}
    assert len({r["id"] for r in runs}) == 3
    for job, run in zip(jobs, runs):
        assert (job / WANDB_ID_FILE).read_text().strip() == run["id"]
