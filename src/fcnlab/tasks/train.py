"""``train(cfg)``: train a segmentation network and score it at every evaluation and budget.

``train.py`` at the top of the repository is a thin ``@hydra.main`` wrapper around it; tests
compose the real config and call it directly. ``task: pretrain`` dispatches to
:func:`fcnlab.tasks.pretrain.pretrain`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from fcnlab.callbacks.budgets import BudgetCheckpoints, check_budgets
from fcnlab.callbacks.checkpoints import (SaveOnSigterm, finished_record, newest_checkpoint,
                                          resolve_resume)
from fcnlab.callbacks.records import RESULTS_FILE, RunRecord, parameter_counts
from fcnlab.config import check_train_config, instantiate, to_plain  # + resolvers
from fcnlab.errors import ConfigError, FcnlabError
from fcnlab.models.checkpoint import load_init_weights
from fcnlab.models.weights import load_pretrained_trunk
from fcnlab.tasks.features import resolve_pretrained
from fcnlab.module import SegmentationModule
from fcnlab.tasks.pretrain import pretrain
from fcnlab.tasks.trainer import (build_trainer, crf_params, fit_and_validate, print_summary,
                                  record_compile_time, save_last_checkpoint, start_run)

log = logging.getLogger(__name__)


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


def pin_run_dir(output_dir: Path) -> None:
    """Make ``hydra.run.dir`` the folder this job already has, so every DDP rank writes there.

    Lightning re-launches the command for the other ranks with
    ``hydra.run.dir=<HydraConfig.get().run.dir>`` (lightning/fabric/strategies/launchers/
    subprocess_script.py, ``_hydra_subprocess_cmd``), which resolves the interpolation again: our
    run folder carries a microsecond stamp (conf/hydra/default.yaml), so rank 1 got a folder of
    its own, with its own log and checkpoint folder. Pinned to the resolved path, it gets ours.
    """
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = str(output_dir)


def resume_setting(cfg: DictConfig):
    """``resume``, with ``ckpt_path`` as its alias: ``train.py ckpt_path=<file>`` is what a
    lightning-hydra-template user types (its train.yaml has ``ckpt_path``); it means
    ``resume=<file>``. Both given with different values is an error."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume not in (None, False) and ckpt_path is not None and str(resume) != str(ckpt_path):
        raise ConfigError(f"resume={resume} and ckpt_path={ckpt_path} disagree; expected one of "
                          f"them (ckpt_path=<file> is an alias of resume=<file>)")
    return ckpt_path if resume in (None, False) else resume


class LostProcessError(FcnlabError):
    """A DDP run stopped because another of its processes died or stopped answering."""


def _lost_process(e: BaseException, trainer) -> bool:
    """Whether ``e`` is a collective that failed because a peer is gone: gloo's "Connection
    closed/reset by peer", or any backend's timeout (``trainer.strategy.timeout``,
    conf/trainer/ddp.yaml). torch raises DistError subclasses for some, a RuntimeError from
    gloo's transport for others (https://pytorch.org/docs/stable/distributed.html)."""
    if trainer.world_size < 2 or not isinstance(e, RuntimeError):
        return False
    text = str(e)
    return isinstance(e, torch.distributed.DistError) or any(
        s in text for s in ("gloo", "Connection closed by peer", "Connection reset by peer",
                            "timed out", "Timed out"))


def train(cfg: DictConfig) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; evaluate every ``val_check_interval`` iterations.

    Returns the run record (also written to ``<output_dir>/results.json``). ``task: pretrain``
    (``experiment=pretrain_vgg``) trains the VGG16 classifier instead
    (:mod:`fcnlab.tasks.pretrain`).
    """
    if cfg.get("task") == "pretrain":
        return pretrain(cfg)
    check_train_config(cfg)
    with open_dict(cfg):
        cfg.resume = resume_setting(cfg)  # every reader (the wandb run id too) sees the alias
    if cfg.resume == "auto" and (
            done := finished_record(Path(cfg.paths.output_dir), cfg.trainer.max_steps)):
        # Nothing left to do: no trainer, no seed, no log line, so a re-run of a table sweep
        # rewrites none of a finished run's files (print, not log: train.log stays as it was).
        # Decided before any trainer exists, hence the same on every DDP rank.
        print(f"resume=auto: {cfg.paths.output_dir} finished its {done['iterations']} "
              f"iterations; nothing to do")
        return done
    output_dir = start_run(cfg)
    pin_run_dir(output_dir)

    datamodule = instantiate(cfg.data.datamodule)
    module = build_module(cfg, datamodule)
    # A network with a minimum input size (DeconvNet's 7×7 fc6) says so before training starts.
    check_size = getattr(module.net, "check_input_size", None)
    if check_size and getattr(datamodule, "image_size", None):
        check_size(datamodule.image_size)
    pretrained = None
    # ImageNet VGG16, or embedded_imagenet: the embedded scale's classifier, built once per recipe
    # and cached (fcnlab.tasks.features) -> the trunk.
    weights, embedded = resolve_pretrained(cfg)
    if weights:
        # Refused before any copy if the weights' input convention is unknown or not the data's
        # preprocess, unless allowed (then recorded as preprocess_warning; docs/reference.md §6).
        pretrained = load_pretrained_trunk(
            module.net, weights, preprocess=cfg.data.datamodule.get("preprocess"),
            declared=cfg.model.get("pretrained_preprocess"),
            allow_mismatch=bool(cfg.model.get("allow_preprocess_mismatch", False)))
        if embedded:
            pretrained["embedded_imagenet"] = embedded
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
    record_compile_time(recorder, module)
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
    trainer = build_trainer(cfg, callbacks=[budget_ckpts, SaveOnSigterm(ckpt_dir), recorder])
    if cfg.get("resume") and not any(c.dirpath and Path(c.dirpath) == ckpt_dir
                                     for c in trainer.checkpoint_callbacks):
        log.warning("resume=%s, but no configured checkpoint callback writes into %s (the "
                    "`latest` callback does): a later resume finds only budget-*.ckpt and "
                    "interrupted.ckpt there", cfg.resume, ckpt_dir)

    def after_fit() -> None:
        if cfg.get("crf") and cfg.crf.get("at_end") and module.crf is None:
            # The DeepLab-LargeFOV-denseCRF row: the final weights once more, with the CRF.
            module.set_crf(crf_params(cfg, force=True))
            trainer.validate(module, datamodule=datamodule)
            module.set_crf(None)
        if cfg.get("test"):
            trainer.test(module, datamodule=datamodule)

    try:
        fit_and_validate(trainer, module, datamodule, recorder, ckpt_path=resume_from,
                         then=after_fit)
    except RuntimeError as e:
        if not _lost_process(e, trainer):
            raise
        # Every rank gets here within the backend's timeout (at once when the peer's sockets
        # close, as after kill -9); Lightning's launcher also ends the others when one of the
        # processes it started exits non-zero. Checkpoint writes are atomic (AtomicCheckpointIO),
        # so the newest one that reads back is complete.
        kept = newest_checkpoint(ckpt_dir)
        error = (f"a DDP process was lost at iteration {trainer.global_step} (rank "
                 f"{trainer.global_rank} of {trainer.world_size} saw: {str(e).splitlines()[0]}); "
                 + (f"the last complete checkpoint is {kept}: continue with resume=auto"
                    if kept else "no checkpoint was saved"))
        recorder.save(status="failed", error=error)
        raise LostProcessError(error) from e
    recorder.save(status="finished", iterations=trainer.global_step,
                  checkpoints={**save_last_checkpoint(trainer),
                               "budgets": {str(k): v for k, v in budget_ckpts.saved.items()}})
    if trainer.global_rank == 0:
        print_summary(recorder.record, module.class_names, output_dir)
    return recorder.record
