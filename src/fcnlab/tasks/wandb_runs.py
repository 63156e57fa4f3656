"""Each job's own wandb run: its name, group, tags and id, the id kept across a resume, and its
closing however the job ends.

:func:`fcnlab.tasks.trainer.build_trainer` fills the wandb loggers of ``cfg.logger`` with
:func:`wandb_run_args` (:func:`_logger_group`; a value the user set wins) and keeps the id in
``<run>/wandb_id`` (:func:`_keep_wandb_id`), so a resumed training job continues its wandb run
(Lightning's WandbLogger passes ``resume="allow"``). A multirun's swept keys are read from the
master config Hydra saves (https://hydra.cc/docs/tutorials/basic/running_your_app/multi-run/). A
task closes its run with :func:`~fcnlab.tasks.trainer.fit_and_validate` or
:func:`closing_loggers`, so the next job of a multirun starts its own.
"""

from __future__ import annotations

import logging
import secrets
import string
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from fcnlab.callbacks.wandb_media import finish_wandb
from fcnlab.config import to_plain

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_id"  # <run>/wandb_id: the run's wandb id, so a resumed run continues it
_ID_CHARS = string.ascii_lowercase + string.digits  # what wandb's own generated ids use


def _hydra() -> DictConfig | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def _swept_keys(hc: DictConfig) -> list[str]:
    """The keys a multirun sweeps: the sweeper's ``params`` (an experiment's ``model: a,b,c``)
    and the command line's sweep overrides (``seed=0,1,2``).

    A job's own config holds only its values (``seed=1``), so the command line's sweeps are read
    from ``<sweep dir>/multirun.yaml``, the master config Hydra's basic sweeper saves before the
    first job (https://hydra.cc/docs/tutorials/basic/running_your_app/multi-run/).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = list(OmegaConf.select(hc, "sweeper.params") or {})
    master = Path(hc.sweep.dir) / "multirun.yaml"
    if master.is_file():
        given = OmegaConf.select(OmegaConf.load(master), "hydra.overrides.task") or []
        keys += [o.key_or_group for o in OverridesParser.create().parse_overrides(list(given))
                 if o.is_sweep_override()]
    return list(dict.fromkeys(keys))


def _resumed_run(cfg: DictConfig, output_dir: Path) -> Path | None:
    """The run folder a training job continues (``resume=auto`` with a checkpoint in this run's
    ``checkpoints/``, or ``resume=<run>/checkpoints/<file>.ckpt``), else None.

    The same folders :func:`fcnlab.callbacks.checkpoints.resolve_resume` and ``train()`` use;
    only the folder is needed here, so no checkpoint is read.
    """
    resume = cfg.get("resume")
    if resume == "auto":
        return output_dir if any((output_dir / "checkpoints").glob("*.ckpt")) else None
    if resume:
        return Path(str(resume)).resolve().parent.parent
    return None


def wandb_run_args(cfg: DictConfig, model_name: str | None = None) -> dict:
    """What makes each job's wandb run its own and findable: ``name``, ``group``, ``tags``, ``id``.

    - ``name``: the model, then what the sweep varies (``key=value`` of each swept override but
      the model) and the seed: ``fcn32s,seed=1``, ``fcn8s,optim=sgd,seed=0``.
    - ``group``: the sweep, its folder under ``paths.log_dir`` (``tables/fcn_table-embedded``,
      ``train/multiruns/<stamp>``); a single run: its experiment, if any.
    - ``tags``: the experiment and the scale.
    - ``id``: the wandb id kept in ``<run>/wandb_id`` of the run a training job resumes, so the
      resumed job continues that wandb run (Lightning's WandbLogger passes ``resume="allow"``:
      https://lightning.ai/docs/pytorch/stable/extensions/generated/lightning.pytorch.loggers.WandbLogger.html);
      else a new id.

    ``model_name`` is the caller's (evaluate's comes from the checkpoint); default ``model.name``.
    """
    hc = _hydra()
    model_name = model_name or OmegaConf.select(cfg, "model.name") or "run"
    seed = cfg.get("seed")
    parts = [str(model_name)]
    group = None
    experiment = OmegaConf.select(hc, "runtime.choices.experiment") if hc is not None else None
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        mine = {o.key_or_group: o.get_value_element_as_str()
                for o in OverridesParser.create().parse_overrides(list(hc.overrides.task))
                if not o.is_sweep_override()}
        parts += [f"{k}={mine[k]}" for k in _swept_keys(hc)
                  if k not in ("model", "seed") and k in mine]
        sweep = Path(hc.sweep.dir).resolve()
        log_dir = Path(OmegaConf.select(cfg, "paths.log_dir") or sweep.parent).resolve()
        group = str(sweep.relative_to(log_dir)) if sweep.is_relative_to(log_dir) else sweep.name
    elif experiment:
        group = str(experiment)
    if seed is not None:
        parts.append(f"seed={seed}")
    tags = [str(t) for t in (experiment, cfg.get("scale_name")) if t]
    output_dir = Path(cfg.paths.output_dir)
    run_id = None
    if OmegaConf.select(cfg, "task") == "train" and (resumed := _resumed_run(cfg, output_dir)):
        id_file = resumed / WANDB_ID_FILE
        if id_file.is_file():
            run_id = id_file.read_text().strip() or None
    if run_id is None:
        run_id = "".join(secrets.choice(_ID_CHARS) for _ in range(8))
    # wandb's limits: a group of 128 characters, tags of 64 (longer ones are rejected).
    return {"name": ",".join(parts), "group": group and group[-128:],
            "tags": [t[:64] for t in tags], "id": run_id}


def _is_wandb(node) -> bool:
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    try:
        return bool(target) and issubclass(get_class(target), WandbLogger)
    except Exception:  # an unknown target fails at instantiation, with Hydra's message
        return False


def _logger_group(cfg: DictConfig, model_name: str | None) -> tuple[Mapping | None, str | None]:
    """``cfg.logger`` with each wandb logger's unset ``name``/``group``/``tags``/``id`` filled in
    (:func:`wandb_run_args`; a value the user set wins), and the wandb id used, if any."""
    group = cfg.get("logger")
    wandb_keys = [key for key, node in (group or {}).items() if _is_wandb(node)]
    if not wandb_keys:
        return group, None
    args = wandb_run_args(cfg, model_name)
    group = dict(group.items())  # the config itself is left as composed (results.json has it)
    run_id = None
    for key in wandb_keys:
        node = to_plain(group[key])  # resolved where it stands (${paths.output_dir})
        for name, value in args.items():
            if node.get(name) is None and not (name == "id" and node.get("version")):
                node[name] = value
        run_id = node.get("version") or node.get("id")
        group[key] = OmegaConf.create(node)
    # A run a previous job of this process left open would be reused by the new logger
    # (WandbLogger.experiment takes wandb.run when one exists): close it first.
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        log.warning("closing the wandb run %s left open by a previous job", wandb.run.id)
        wandb.finish()
    return group, run_id


def _keep_wandb_id(trainer: L.Trainer, output_dir: Path, run_id: str | None) -> None:
    """Write ``<run>/wandb_id`` (rank 0), unless it already says ``run_id``: a re-run that
    continues the same wandb run changes nothing there."""
    if run_id is None or not trainer.is_global_zero:
        return
    path = output_dir / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip() == run_id:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")


@contextmanager
def closing_loggers(trainer: L.Trainer) -> Iterator[L.Trainer]:
    """Close the job's wandb run however the block ends: finished, or failed (exit code 1) when
    an exception (SIGTERM and Ctrl-C included) leaves it, which is re-raised.

    For a task without :func:`~fcnlab.tasks.trainer.fit_and_validate` (``with
    closing_loggers(build_trainer(cfg)) as trainer: trainer.predict(...)``), so the next job of a
    multirun starts its own run.
    """
    try:
        yield trainer
    finally:
        finish_wandb(trainer, exit_code=1 if sys.exc_info()[0] is not None else 0)
