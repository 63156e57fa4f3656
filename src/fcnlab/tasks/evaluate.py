"""``evaluate(cfg)``: score a checkpoint on a split, the way training scored it.

``eval.py`` at the top of the repository is a thin ``@hydra.main`` wrapper around it.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fcnlab.callbacks.records import RunRecord, parameter_counts
from fcnlab.config import instantiate, to_plain
from fcnlab.errors import ConfigError
from fcnlab.module import SegmentationModule
from fcnlab.tasks.trainer import build_trainer, crf_params, print_summary, record_compile_time
from fcnlab.tasks.wandb_runs import closing_loggers


def evaluate(cfg: DictConfig) -> dict:
    """Score a checkpoint on a split (``cfg.split``: val or test), the way training scored it.

    The data config saved in the checkpoint is used unless ``data=…`` is given.
    """
    if cfg.get("split") not in ("val", "test"):
        raise ConfigError(f"split: expected 'val' or 'test', got {cfg.get('split')!r}")
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: expected the path of a checkpoint to evaluate")
    module, ckpt = SegmentationModule.from_checkpoint(cfg.ckpt_path,
                                                      metrics=to_plain(cfg.get("metrics")))
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
    record_compile_time(recorder, module)
    trainer = build_trainer(cfg, model_name=module.hparams.name)
    run = trainer.validate if cfg.split == "val" else trainer.test
    # One wandb run per job, also in an eval multirun; closed (failed, on an exception) here.
    with closing_loggers(trainer):
        try:
            run(module, datamodule=datamodule)
        except BaseException as e:
            recorder.save(status="failed", error=f"{type(e).__name__}: {e}")
            raise
    recorder.add_evaluation(cfg.split, iteration, module.last_scores.pop(cfg.split))
    recorder.save(status="finished")
    if trainer.global_rank == 0:
        print_summary(recorder.record, module.class_names, output_dir)
    return recorder.record
