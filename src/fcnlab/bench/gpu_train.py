"""The GPU check's training phase (:mod:`fcnlab.bench.gpu_check`): the ``train.py`` overrides
that train a full-width FCN-8s on synthetic images of the paper's size, and what the run left
behind (the step timer's rate and loss, ``results.json``'s status and validation scores)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path


def train_overrides(mode, work: Path, extra: list[str]) -> list[str]:
    t = mode.train
    return [
        f"trainer={'cpu' if mode.dry else 'gpu'}", "model=fcn8s", "data=synthetic",
        # scale=embedded (train.yaml's default) shrinks the width to 1/8: back to the paper's
        # full width here, keeping that scale's solver (Adam) and unit-scale input, the recipe
        # this project trains from scratch with (no ImageNet weights on the machine). At lr
        # 1e-4, not 1e-3: Adam's step has the same size at any width, but He-initialised
        # full-width weights are about 3x smaller (fc6: 0.009), so 1e-3 is a far larger
        # relative step; 1e-4 is the lr the embedded recipe trains VGG16 from scratch with.
        f"model.net.width={mode.width}", "optim.optimizer.lr=1e-4", "model.pretrained=null",
        f"data.datamodule.image_size=[{t['image_size'][0]},{t['image_size'][1]}]",
        *(f"data.datamodule.{k}={t[k]}" for k in ("num_train", "num_val", "num_test",
                                                   "batch_size", "eval_batch_size",
                                                   "num_workers")),
        f"trainer.max_steps={t['steps']}", f"trainer.val_check_interval={t['steps']}",
        f"trainer.log_every_n_steps={min(10, t['steps'])}",
        # No checkpoints of a throw-away run: at full width each is ~1.6 GB (Adam's state).
        "~callbacks.latest", "~callbacks.best",
        "+callbacks.gpu_check_steps._target_=fcnlab.bench.step_timer.StepTimer",
        f"+callbacks.gpu_check_steps.path={work / 'steps.json'}",
        # The rate leaves out the first iterations (cuDNN's search, the loaders' start), but
        # not all of a dry run's three.
        f"+callbacks.gpu_check_steps.skip={5 if t['steps'] > 10 else 0}",
        f"paths.data_dir={work / 'data'}", f"paths.log_dir={work / 'logs'}",
        f"hydra.run.dir={work / 'train-run'}", *extra]


def train_result(mode, work: Path, overrides: list[str]) -> dict:
    """What the training phase measured: the step timer's rate and loss, the run record's
    status, iterations and last validation scores (the scalar ones)."""
    out: dict = {"command": shlex.join(["python", "train.py", *overrides]),
                 "steps_asked": mode.train["steps"], "image_size": mode.train["image_size"],
                 "batch_size": mode.train["batch_size"], "width": mode.width}
    for name, key in (("steps.json", "steps"), ("train-run/results.json", "record")):
        try:
            data = json.loads((work / name).read_text())
        except (OSError, ValueError):
            continue
        if key == "steps":
            out.update({k: data[k] for k in ("iterations", "iters_per_s", "iters_per_s_mean",
                                             "images_per_s", "step_s_median", "first_iteration_s",
                                             "final_loss", "final_loss_mean_last_10",
                                             "first_loss", "loss_every_10", "error")
                        if k in data})
            out["train_iterations_timed"] = out.pop("iterations", None)
        else:
            vals = [e for e in data.get("evaluations", []) if e.get("split") == "val"]
            cfg = data.get("config") or {}
            dm = cfg.get("data", {}).get("datamodule", {})
            # What the run was given, after every override (--train-arg ones too).
            out.update(width=cfg.get("model", {}).get("net", {}).get("width", out["width"]),
                       image_size=dm.get("image_size", out["image_size"]),
                       batch_size=dm.get("batch_size", out["batch_size"]),
                       lr=cfg.get("optim", {}).get("optimizer", {}).get("lr"),
                       precision=cfg.get("trainer", {}).get("precision"))
            out.update(status=data.get("status"), iterations=data.get("iterations"),
                       wall_time_s=data.get("wall_time_s"), compile_s=data.get("compile_s"),
                       val={k: v for k, v in (vals[-1] if vals else {}).items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


def train_passed(train: dict) -> str | None:
    """Why the training phase did not pass, or None."""
    if train.get("status") != "finished":
        return f"run record status {train.get('status')!r} (expected 'finished')"
    if train.get("iterations") != train["steps_asked"]:
        return f"{train.get('iterations')} iterations of {train['steps_asked']}"
    if "mean_iou" not in train.get("val", {}):
        return "no validation scores in results.json"
    return None
