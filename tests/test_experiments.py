"""The table experiments: what every job of the four sweeps is, then two end to end at toy size.

Every job of experiment=fcn_table_{embedded,paper}, fcn_heavy_paper and
segnet_table_{embedded,paper} is composed and its key values pinned (data, solver, schedule,
budgets, batch, preprocessing, weights, stage chain, split): the presets were once spread over
conf/experiment, conf/table and the command line, and these numbers are what they composed to.
End to end: the FCN staged chain (FCN-32s -> 16s -> 8s) inside one multirun command, and the
SegNet table's 2 models x 2 budgets with the report's cells checked against the runs'
results.json.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
TOY = ["debug=fast", "trainer.val_check_interval=2"]


# ----------------------------------------------------------------------------- every job, pinned
# Per sweep: its folder, its jobs in order (the FCN stages need that order), the values every job
# has, and per job what differs. "{data}" is paths.data_dir, "{sweep}" the sweep folder.
FCN_HEAVY_LR = {"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14, "fcn8s_atonce": 1e-10}
FCN_CVPR_LR = {"fcn32s_fixed": 1e-4, "fcn32s": 1e-4, "fcn16s": 1e-6, "fcn8s": 1e-8}
SEGNET_MODELS = ["segnet", "deeplab_largefov", "fcn_bilinear", "fcn_learnt_deconv", "deconvnet"]
ABSENT = "<absent>"  # the key is not in the job's config
# the embedded scale's cached classifier (fcnlab.tasks.features), the same for every seed
FEATURES = "embedded_imagenet"
STAGES = {"fcn16s": "{sweep}/fcn32s/seed0/checkpoints/last.ckpt",
          "fcn8s": "{sweep}/fcn16s/seed0/checkpoints/last.ckpt"}
EMBEDDED = {"model.net.width": 0.125, "data.name": "synthetic",
            "data.datamodule.preprocess": "torchvision", "optim.optimizer._target_":
            "torch.optim.Adam", "optim.optimizer.lr": 3e-3, "optim.optimizer.weight_decay": 0.0,
            "optim.scheduler._target_": "torch.optim.lr_scheduler.PolynomialLR",
            "optim.scheduler.power": 0.9, "deviations.fcn_geometry": "aligned",
            "deviations.batch_norm": True, "deviations.fc_channels": 1024,
            "trainer.accelerator": "auto", "loss.reduction": "mean", "loss.class_weights": None}
PAPER = {"model.net.width": 1.0, "data.datamodule.preprocess": "caffe",
         "optim.optimizer._target_": "torch.optim.SGD", "trainer.accelerator": "gpu",
         "trainer.val_check_interval": 4000}
# Both FCN paper protocols: SBD train minus seg11valid, whole images at batch 1, Caffe weights.
FCN_VOC = {"data.name": "voc", "data.datamodule.batch_size": 1,
           "data.datamodule.sbd_root": "{data}/benchmark_RELEASE/dataset",
           "data.datamodule.train_sets": ["sbd_train"],
           "data.datamodule.val_set": "{data}/seg11valid.txt",
           "optim.optimizer.weight_decay": 5e-4, "optim.bias_lr_mult": 2.0,
           "optim.bias_decay_mult": 0.0, "optim.scheduler": None,
           "model.pretrained": "{data}/weights/vgg16_classifier.pth", "budgets": [],
           "callbacks.bn_recompute": ABSENT}
SWEEPS = {
    "fcn_table_embedded": {
        "folder": "fcn_table-embedded",
        "models": ["fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s"],
        "all": {**EMBEDDED, "data.datamodule.batch_size": 8,
                "data.datamodule.image_size": [96, 128], "data.datamodule.num_train": 2000,
                "data.datamodule.num_val": 200, "optim.scheduler.total_iters": 1200,
                "trainer.max_steps": 1200, "trainer.val_check_interval": 300, "budgets": [],
                "model.net.geometry": "aligned", "model.net.batch_norm": True,
                "model.net.fc_channels": 1024, "embedded_imagenet.data.seed": 1,
                "callbacks.bn_recompute": ABSENT, "task": "train"},
        "job": lambda m: {"model.pretrained": FEATURES if m in ("fcn32s_fixed", "fcn32s") else None,
                          "model.init_from": STAGES.get(m)},
    },
    "fcn_table_paper": {  # the CVPR protocol of Table 2 (docs/reference.md §3)
        "folder": "fcn_table-paper",
        "models": ["fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s"],
        "all": {**PAPER, **FCN_VOC, "protocol": "fcn_cvpr",
                "trainer.accumulate_grad_batches": 20, "trainer.max_steps": 5000,
                "trainer.val_check_interval": 200, "optim.optimizer.momentum": 0.9,
                "loss.reduction": "mean", "model.net.upsample_learn": "cvpr"},
        "job": lambda m: {"optim.optimizer.lr": FCN_CVPR_LR[m], "model.init_from": STAGES.get(m)},
    },
    "fcn_heavy_paper": {  # the authors' heavy reference protocol (docs/reference.md §3)
        "folder": "fcn_heavy-paper",
        "models": ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"],
        "all": {**PAPER, **FCN_VOC, "protocol": "fcn_heavy",
                "trainer.accumulate_grad_batches": ABSENT, "optim.optimizer.momentum": 0.99,
                "loss.reduction": "sum", "model.net.upsample_learn": "none"},
        "job": lambda m: {"optim.optimizer.lr": FCN_HEAVY_LR[m], "model.init_from": STAGES.get(m),
                          "trainer.max_steps": 300000 if m == "fcn8s_atonce" else 100000},
    },
    "segnet_table_embedded": {
        "folder": "segnet_table-embedded",
        # longest job first, for a parallel launcher (the experiment's comment)
        "models": ["deconvnet", "segnet", "deeplab_largefov", "fcn_learnt_deconv", "fcn_bilinear"],
        "all": {**EMBEDDED, "data.datamodule.image_size": [96, 128],
                "data.datamodule.num_train": 2000, "data.datamodule.num_val": 200,
                "data.datamodule.num_test": 200, "data.datamodule.batch_size": 8,
                "data.datamodule.eval_batch_size": 20, "budgets": [400, 800],
                "trainer.max_steps": 1200, "trainer.val_check_interval": 200,
                "optim.scheduler.total_iters": 1200, "deviations.deconvnet_fc6_padding": 3,
                "callbacks.bn_recompute.max_batches": 8, "model.pretrained": "embedded_imagenet"},
        "job": lambda m: {"crf.at_end": m == "deeplab_largefov",
                          "model.net.fc6_padding": 3 if m == "deconvnet" else ABSENT},
    },
    "segnet_table_paper": {
        "folder": "segnet_table-paper",
        "models": SEGNET_MODELS,
        "all": {**PAPER, "data.name": "camvid", "data.datamodule.root": "{data}/CamVid",
                "data.datamodule.train_split": "train", "protocol": "segnet_table3",
                # Table 3 is scored on CamVid test at every budget (docs/reference.md §1)
                "data.datamodule.val_split": "test",
                "data.datamodule.batch_size": 5, "optim.optimizer.lr": 1e-3,
                "optim.optimizer.momentum": 0.9, "optim.optimizer.weight_decay": 5e-4,
                "optim.bias_lr_mult": 2.0, "optim.bias_decay_mult": 0.0,
                "optim.scheduler": None, "loss.reduction": "mean", "loss.class_weights": None,
                "budgets": [40000, 80000], "trainer.max_steps": 260000,
                "callbacks.bn_recompute.max_batches": None,
                "model.pretrained": "{data}/weights/vgg16_classifier.pth"},
        "job": lambda m: {"crf.at_end": m == "deeplab_largefov"},
    },
}
# Every SegNet-table job: BN after every conv (DeepLab reads the switch), resumable, checkpoints.
for _name in ("segnet_table_embedded", "segnet_table_paper"):
    SWEEPS[_name]["all"].update({"batch_norm_everywhere": True, "resume": "auto",
                                 "callbacks.latest.save_last": True})
for _name in ("fcn_table_embedded", "fcn_table_paper", "fcn_heavy_paper"):
    SWEEPS[_name]["all"].update({"resume": "auto", "callbacks.latest.save_last": True})
JOBS = [(name, model) for name, sweep in SWEEPS.items() for model in sweep["models"]]


def _expected(name: str, model: str, data: Path, sweep: Path) -> dict:
    want = {**SWEEPS[name]["all"], **SWEEPS[name]["job"](model), "model.name": model}
    return {k: v.format(data=data, sweep=sweep) if isinstance(v, str) else v
            for k, v in want.items()}


@pytest.mark.parametrize("name,model", JOBS, ids=[f"{n}:{m}" for n, m in JOBS])
def test_every_table_job_composes_to_its_pinned_values(tmp_path, name, model):
    cfg = compose_cfg("train", [f"experiment={name}", f"model={model}"], tmp_path, debug=None,
                      keep_hydra=True)
    sweep = tmp_path / "logs" / "tables" / SWEEPS[name]["folder"]
    assert cfg.hydra.sweep.dir == str(sweep) and cfg.hydra.sweep.subdir == f"{model}/seed0"
    assert cfg.hydra.sweeper.params.model == ",".join(SWEEPS[name]["models"])
    plain = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    want = _expected(name, model, tmp_path / "data", sweep)
    got = {key: OmegaConf.select(OmegaConf.create(plain), key, default=ABSENT)
           for key in want}
    assert got == want
    assert "requires" not in plain  # the command needs no data=/optim= any more


@pytest.mark.parametrize("name,data,optim,scale", [
    ("fcn_table_embedded", "synthetic", "adam", "embedded"),
    ("fcn_table_paper", "voc", "sgd", "paper"),
    ("fcn_heavy_paper", "voc", "sgd_heavy", "paper"),
    ("segnet_table_embedded", "synthetic", "adam", "embedded"),
    ("segnet_table_paper", "camvid", "sgd", "paper")])
def test_table_presets_choose_their_data_solver_and_scale(tmp_path, name, data, optim, scale):
    compose_cfg("train", [f"experiment={name}"], tmp_path, debug=None)
    choices = HydraConfig.get().runtime.choices
    assert (choices.data, choices.optim, choices.scale) == (data, optim, scale)


def _sweep(tmp_path: Path, data_dir: Path, args: list[str]) -> None:
    subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *args, *TOY,
                    f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}"],
                   check=True, cwd=ROOT, capture_output=True, timeout=600)


def _report(sweep: Path) -> list[dict]:
    subprocess.run([sys.executable, "-m", "fcnlab.report", str(sweep), "--no-predictions"],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    with open(sweep / "report" / "table.csv") as f:  # one row per run (kind=run) is compared
        return [r for r in csv.DictReader(f) if r.get("kind") == "run"]


def _record(sweep: Path, model: str, seed: int = 0) -> dict:
    return json.loads((sweep / model / f"seed{seed}" / "results.json").read_text())


def test_fcn_table_staged_chain_in_one_multirun(tmp_path, data_dir):
    args = ["experiment=fcn_table_embedded", "trainer.max_steps=2"]
    # A data folder of its own: other tests' default runs build the same small classifier.
    data_dir = tmp_path / "data"
    _sweep(tmp_path, data_dir, args)
    sweep = tmp_path / "tables" / "fcn_table-embedded"
    # FCN-32s-fixed builds the embedded ImageNet (debug=fast: its recipe shrunk), FCN-32s finds
    # it cached: both start from the same file.
    fixed = _record(sweep, "fcn32s_fixed")["pretrained"]
    full = _record(sweep, "fcn32s")["pretrained"]
    assert fixed["embedded_imagenet"]["built_now"] and not full["embedded_imagenet"]["built_now"]
    assert fixed["sha256"] == full["sha256"] == fixed["embedded_imagenet"]["sha256"]
    sha, key = fixed["sha256"], fixed["embedded_imagenet"]["key"]
    assert fixed["embedded_imagenet"]["path"].startswith(str(data_dir / "embedded_imagenet" / key))
    assert _record(sweep, "fcn16s")["init_from"].endswith("fcn32s/seed0/checkpoints/last.ckpt")
    assert _record(sweep, "fcn8s")["init_from"].endswith("fcn16s/seed0/checkpoints/last.ckpt")
    assert _record(sweep, "fcn16s")["init_copied"] > 0 and _record(sweep, "fcn8s")["init_copied"]
    rows = _report(sweep)
    for model in ("fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s"):
        final = _record(sweep, model)["evaluations"][-1]
        (row,) = [r for r in rows if r.get("model") == model]
        assert float(row["mean_iou"]) == pytest.approx(100 * final["mean_iou"])
    md = (sweep / "report" / "table.md").read_text()
    assert "Features: the pretrained VGG16 classifier" in md and sha[:12] in md
    assert f"embedded_imagenet {key} (2 runs)" in md

    # Re-running the command finishes the sweep: nothing is trained or built again.
    classifier = Path(fixed["embedded_imagenet"]["path"])
    stamp = classifier.stat().st_mtime_ns
    before = _record(sweep, "fcn8s")
    _sweep(tmp_path, data_dir, args)
    assert classifier.stat().st_mtime_ns == stamp
    assert _record(sweep, "fcn8s") == before


def test_segnet_table_budgets_reach_the_report(tmp_path, data_dir):
    _sweep(tmp_path, data_dir, ["experiment=segnet_table_embedded", "model=segnet,fcn_bilinear",
                                "budgets=[2,4]", "trainer.max_steps=6"])
    sweep = tmp_path / "tables" / "segnet_table-embedded"
    rows = _report(sweep)
    for model in ("segnet", "fcn_bilinear"):
        record = _record(sweep, model)
        by_iter = {e["iteration"]: e for e in record["evaluations"] if not e.get("crf")}
        assert sorted(by_iter) == [2, 4, 6]
        for budget in (2, 4):
            (row,) = [r for r in rows if r.get("model") == model
                      and r.get("column") == f"budget {budget}"]
            assert float(row["mean_iou"]) == pytest.approx(100 * by_iter[budget]["mean_iou"])
            assert float(row["bf"]) == pytest.approx(100 * by_iter[budget]["bf"])
