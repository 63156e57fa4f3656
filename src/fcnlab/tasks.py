"""``train(cfg)`` and ``evaluate(cfg)``: the Lightning + Hydra glue, importable and short.

``train.py`` and ``eval.py`` at the top of the repository are thin ``@hydra.main`` wrappers
around these; tests compose the real config and call them directly.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fcnlab.budgets import BudgetCheckpoints, check_budgets
from fcnlab.config import check_train_config, instantiate, to_plain  # + resolvers
from fcnlab.errors import ConfigError
from fcnlab.metrics import format_scores_table
from fcnlab.models.checkpoint import load_init_weights
from fcnlab.models.convert import load_pretrained_trunk
from fcnlab.module import SegmentationModule
from fcnlab.progress import PlainProgress, is_interactive
from fcnlab.records import RESULTS_FILE, RunRecord, parameter_counts
from fcnlab.wandb_extras import WandbPredictions, finish_wandb
from fcnlab.resume import AtomicCheckpointIO, SaveOnSigterm, resolve_resume

log = logging.getLogger(__name__)
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.", category=FutureWarning)


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a dict-shaped group (callbacks, loggers); ``None`` entries skip."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


CRF_SWITCHES = ("enabled", "at_end")


def progress_settings(cfg: DictConfig) -> tuple[dict, list]:
    """Trainer keyword arguments and callbacks for progress: Rich's bar on a terminal, plain
    periodic lines when the output is a log file (clusters, CI)."""
    if is_interactive():
        return {}, []
    return ({"enable_progress_bar": False},
            [PlainProgress(every=cfg.trainer.get("log_every_n_steps") or 50)])


def crf_params(cfg: DictConfig, force: bool = False) -> dict | None:
    """The dense-CRF parameters when ``crf.enabled`` (or ``force``), else None."""
    crf = to_plain(cfg.get("crf")) or {}
    if not (crf.get("enabled") or force):
        return None
    return {k: v for k, v in crf.items() if k not in CRF_SWITCHES}


def build_module(cfg: DictConfig, datamodule) -> SegmentationModule:
    if datamodule.num_classes != cfg.data.num_classes:
        raise ConfigError(
            f"data.num_classes is {cfg.data.num_classes} but the data set has "
            f"{datamodule.num_classes} classes"
        )
    loss = to_plain(cfg.loss)
    if loss.get("class_weights") is not None:  # median_freq or a list -> K floats, recorded
        datamodule.prepare_data()
        loss["class_weights"] = datamodule.class_weights(loss["class_weights"])
    return SegmentationModule(
        net=to_plain(cfg.model.net),
        optim=to_plain(cfg.optim),
        loss=loss,
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        metrics=to_plain(cfg.get("metrics")),
        name=cfg.model.name,
        data=to_plain(cfg.data),
        crf=crf_params(cfg),
        fast=to_plain(cfg.get("fast")),
    )


def _record_compile_time(recorder: RunRecord, module: SegmentationModule) -> None:
    """With ``fast.compile``, results.json gets ``compile_s``: the wall seconds of the first
    training step and the first evaluation forward (``{"train": …, "eval": …}``), which compile.

    The record holds the module's own dict, so every later save writes what has been measured.
    """
    if module.compiled:
        recorder.record["compile_s"] = module.compile_s


def _print_summary(record: dict, class_names: list[str], output_dir: Path) -> None:
    last = {}
    for e in record["evaluations"]:
        last[e["split"]] = e
    for split, e in last.items():
        scores = dict(e, iou=[e["iou"][n] if e["iou"][n] is not None else float("nan")
                              for n in class_names])
        print(f"\n{record['model']} on {record['data']} / {split} at iteration {e['iteration']}:")
        print(format_scores_table(scores, class_names))
        if "majority_class_mean_iou" in e:
            print(f"(always predicting the most frequent class: pixel acc "
                  f"{100 * e['majority_class_pixel_acc']:.2f}, mean IU "
                  f"{100 * e['majority_class_mean_iou']:.2f})")
    evals = [e for e in record["evaluations"] if e["split"] == "val" and not e.get("crf")]
    if len(evals) > 1:
        print("\nval mean IU by iteration: " + ", ".join(
            f"{e['iteration']}: {100 * e['mean_iou']:.2f}" for e in evals))
    print(f"\nrun folder: {output_dir}\nresults:    {output_dir / 'results.json'}")
    ckpts = record.get("checkpoints") or {}
    if ckpts.get("last"):
        print(f"checkpoint: {ckpts['last']}")


def _save_last_checkpoint(trainer: L.Trainer) -> dict:
    """Make ``last.ckpt`` hold the final weights; return the checkpoint paths.

    The ``latest`` callback refreshes it at every evaluation during fit; this covers a final
    evaluation run after fit (max_steps not on an evaluation) and configs without that callback.
    """
    ckpts = [c for c in trainer.checkpoint_callbacks if c.dirpath]
    if not ckpts:
        return {"last": None, "best": None}
    saver = next((c for c in ckpts if c.save_last), ckpts[0])
    last = Path(saver.dirpath) / f"{saver.CHECKPOINT_NAME_LAST}{saver.FILE_EXTENSION}"
    trainer.save_checkpoint(last, weights_only=False)  # full state: resumable
    saver.last_model_path = str(last)
    best = next((c.best_model_path for c in ckpts if c.monitor and c.best_model_path), None)
    return {"last": str(last), "best": best}


def train(cfg: DictConfig) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; evaluate every ``val_check_interval`` iterations.

    Returns the run record (also written to ``<output_dir>/results.json``). ``task: pretrain``
    (``experiment=pretrain_vgg``) trains the VGG16 classifier instead (:mod:`fcnlab.pretrain`).
    """
    if cfg.get("task") == "pretrain":
        from fcnlab.pretrain import pretrain

        return pretrain(cfg)
    check_train_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule = instantiate(cfg.data.datamodule)
    module = build_module(cfg, datamodule)
    # A network with a minimum input size (DeconvNet's 7×7 fc6) says so before training starts.
    check_size = getattr(module.net, "check_input_size", None)
    if check_size and getattr(datamodule, "image_size", None):
        check_size(datamodule.image_size)
    pretrained = None
    if cfg.model.get("pretrained"):  # ImageNet VGG16 (or the embedded recipe's) -> the trunk
        pretrained = load_pretrained_trunk(module.net, cfg.model.pretrained,
                                           preprocess=cfg.data.datamodule.get("preprocess"))
    init_report = None
    if cfg.model.get("init_from"):  # a previous stage: overrides the trunk too
        init_report = load_init_weights(module.net, cfg.model.init_from)

    recorder = RunRecord(output_dir, {
        "task": "train",
        "model": cfg.model.name,
        "data": cfg.data.name,
        "output_dir": str(output_dir),
        "parameters": parameter_counts(module.net),
        "pretrained": pretrained,
        "init_from": cfg.model.get("init_from"),
        "init_copied": len(init_report["copied"]) if init_report else None,
        "config": to_plain(cfg),
    })
    _record_compile_time(recorder, module)
    budgets = check_budgets(cfg.get("budgets"), cfg.trainer.max_steps,
                            cfg.trainer.get("val_check_interval"))
    recorder.record["budgets"] = budgets
    ckpt_dir = output_dir / "checkpoints"
    resume_from = resolve_resume(cfg.get("resume"), ckpt_dir)
    if resume_from:
        step = int(torch.load(resume_from, map_location="cpu", weights_only=True,
                              mmap=True)["global_step"])
        recorder.continue_from(Path(resume_from).parent.parent / RESULTS_FILE, step, resume_from)
    budget_ckpts = BudgetCheckpoints(budgets, ckpt_dir)
    loggers = _instantiate_all(cfg.get("logger"))
    uses_wandb = any(type(lg).__name__ == "WandbLogger" for lg in loggers)
    extras = [WandbPredictions()] if uses_wandb else []
    progress, plain = progress_settings(cfg)
    extras += plain
    callbacks = (_instantiate_all(cfg.get("callbacks")) + extras
                 + [budget_ckpts, SaveOnSigterm(ckpt_dir), recorder])
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()],
        **progress,
    )
    recorder.save()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        last = recorder.last("val")
        if last is None or last["iteration"] != trainer.global_step:
            trainer.validate(module, datamodule=datamodule)  # always score the final weights
        if cfg.get("crf") and cfg.crf.get("at_end") and module.crf is None:
            # The DeepLab-LargeFOV-denseCRF row: the final weights once more, with the CRF.
            module.set_crf(crf_params(cfg, force=True))
            trainer.validate(module, datamodule=datamodule)
            module.set_crf(None)
        if cfg.get("test"):
            trainer.test(module, datamodule=datamodule)
    except SIGTERMException:
        recorder.save(status="interrupted", iterations=trainer.global_step,
                      error="SIGTERM: state saved in checkpoints/interrupted.ckpt; "
                            "re-run the same command with resume=auto to continue")
        raise
    except BaseException as e:
        recorder.save(status="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        finish_wandb(trainer)
    recorder.save(status="finished", iterations=trainer.global_step,
                  checkpoints={**_save_last_checkpoint(trainer),
                               "budgets": {str(k): v for k, v in budget_ckpts.saved.items()}})
    if trainer.global_rank == 0:
        _print_summary(recorder.record, module.class_names, output_dir)
    return recorder.record


def load_module(ckpt_path: str | Path) -> tuple[SegmentationModule, dict]:
    """Rebuild the module from a checkpoint alone (``weights_only=True``).

    The network comes back on the plain path (default layout, not compiled) whatever ``fast``
    settings the run trained with: those are about the machine, so the caller chooses again
    (``evaluate`` applies its own ``fast:``; :meth:`SegmentationModule.set_fast`).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path: {str(path)!r} does not exist; expected a .ckpt file")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path: {str(path)!r} is not an fcnlab Lightning checkpoint")
    module = SegmentationModule(**{**ckpt["hyper_parameters"], "fast": None})
    module.load_state_dict(ckpt["state_dict"])
    return module, ckpt


def evaluate(cfg: DictConfig) -> dict:
    """Score a checkpoint on a split (``cfg.split``: val or test), the way training scored it.

    The data config saved in the checkpoint is used unless ``data=…`` is given.
    """
    if cfg.get("split") not in ("val", "test"):
        raise ConfigError(f"split: expected 'val' or 'test', got {cfg.get('split')!r}")
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: expected the path of a checkpoint to evaluate")
    module, ckpt = load_module(cfg.ckpt_path)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # A complete data config on the command line wins; a partial one (e.g. from debug=fast,
    # which only shrinks sizes) is merged over the checkpoint's.
    data_cfg = OmegaConf.create(module.hparams.data)
    if cfg.get("data"):
        data_cfg = cfg.data if "name" in cfg.data else OmegaConf.merge(data_cfg, cfg.data)
    datamodule = instantiate(data_cfg.datamodule)
    if datamodule.num_classes != module.num_classes:
        raise ConfigError(f"the checkpoint has {module.num_classes} classes but data "
                          f"{data_cfg.name!r} has {datamodule.num_classes}")
    module.preprocess = data_cfg.datamodule.get("preprocess", module.preprocess)
    if cfg.get("crf") is not None and cfg.crf.get("enabled"):
        module.set_crf(crf_params(cfg))
    module.set_fast(to_plain(cfg.get("fast")))
    iteration = int(ckpt.get("global_step", 0))
    recorder = RunRecord(output_dir, {
        "task": "eval",
        "model": module.hparams.name,
        "data": data_cfg.name,
        "output_dir": str(output_dir),
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "crf": module.crf is not None,
        "parameters": parameter_counts(module.net),
        "config": to_plain(cfg),
    })
    _record_compile_time(recorder, module)
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=_instantiate_all(cfg.get("logger")) or False
    )
    run = trainer.validate if cfg.split == "val" else trainer.test
    try:
        run(module, datamodule=datamodule)
    except BaseException as e:
        recorder.save(status="failed", error=f"{type(e).__name__}: {e}")
        raise
    recorder.add_evaluation(cfg.split, iteration, module.last_scores.pop(cfg.split))
    recorder.save(status="finished")
    if trainer.global_rank == 0:
        _print_summary(recorder.record, module.class_names, output_dir)
    return recorder.record
