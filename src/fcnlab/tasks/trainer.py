"""What every task shares: the trainer with its callbacks, loggers and plugins, the run skeleton
(seed, run folder, fit, final validation, the record's end state), the CRF switch, and the
summary a finished run prints. Each job's wandb run (its name, id and closing) is in
:mod:`fcnlab.tasks.wandb_runs`."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from fcnlab.callbacks.checkpoints import AtomicCheckpointIO, SaveOnSigterm
from fcnlab.callbacks.progress import is_interactive
from fcnlab.callbacks.records import RunRecord
from fcnlab.callbacks.wandb_media import finish_wandb
from fcnlab.config import instantiate, to_plain
from fcnlab.errors import ConfigError
from fcnlab.metrics import format_scores_table
from fcnlab.tasks.wandb_runs import _keep_wandb_id, _logger_group

if TYPE_CHECKING:
    from fcnlab.module import SegmentationModule

log = logging.getLogger(__name__)
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.", category=FutureWarning)


# ----------------------------------------------------------------------------- the trainer
def instantiate_all(group: DictConfig | None, name: str = "callbacks") -> list:
    """Instantiate every entry of a dict-shaped group (``callbacks``, ``logger``).

    ``null`` entries (``callbacks.best=null``) are skipped, and so are entries left without a
    ``_target_`` (a preset setting ``callbacks.bn_recompute.max_batches`` after the callback was
    dropped), with a warning; anything else is a ConfigError naming the key.
    """
    if not group:
        return []
    out = []
    for key, node in group.items():
        if node is None:
            continue
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{name}.{key}: expected a config with a _target_, got {node!r}")
        if "_target_" not in node:
            log.warning("%s.%s has no _target_ (only %s): not used", name, key, sorted(node))
            continue
        out.append(instantiate(node))
    return out


def _plugins(configured) -> list:
    """The trainer's configured plugins plus :class:`AtomicCheckpointIO`, never instead of them.

    ``+trainer.plugins=[{_target_: lightning.pytorch.plugins.environments.SLURMEnvironment}]``
    (a cluster environment with requeue on SIGUSR1) reaches the trainer beside the atomic writes.
    ``configured`` is the plain value of ``trainer.plugins``: a list, one plugin, or None. A
    CheckpointIO of the user's own replaces ours (Lightning takes one), with a warning.
    """
    if configured is None:
        configured = []
    elif not isinstance(configured, list):  # one plugin, not in a list
        configured = [configured]
    # A dict is a plugin's config; anything else (a name such as "bf16-mixed") goes to Lightning.
    plugins = [instantiate(p) if isinstance(p, dict) else p for p in configured]
    if any(isinstance(p, CheckpointIO) for p in plugins):
        log.warning("trainer.plugins has its own CheckpointIO: checkpoint writes are not atomic "
                    "(fcnlab.callbacks.checkpoints.AtomicCheckpointIO is not added)")
        return plugins
    return [*plugins, AtomicCheckpointIO()]


def build_trainer(cfg: DictConfig, *, callbacks: Iterable[L.Callback] = (),
                  skip: Mapping[type, str] | None = None, model_name: str | None = None,
                  **overrides) -> L.Trainer:
    """``cfg.trainer`` with the loggers of ``cfg.logger``, the callbacks of ``cfg.callbacks`` and
    then the task's own ``callbacks``, and the configured plugins plus atomic checkpoint writes.

    ``skip`` maps callback types the task cannot use to the reason, logged for each one dropped
    from the config. ``overrides`` are further Trainer arguments (the task's own schedule).

    A wandb logger gets this job's own run (:func:`~fcnlab.tasks.wandb_runs.wandb_run_args`;
    ``model_name`` names it when the config has no ``model``, as in evaluate); its id is kept in
    ``<run>/wandb_id``. The task closes the run (:func:`fit_and_validate`,
    :func:`~fcnlab.tasks.wandb_runs.closing_loggers`).

    What is listed in conf/callbacks/ and what a task wires itself, and why:

    - conf/callbacks/ (a user may set or drop each): the checkpoints ``latest`` and ``best``,
      ``lr_monitor``, ``plain_progress``, ``wandb_predictions``, ``prediction_images``,
      ``bn_recompute``, ``early_stopping``, ``rich_progress``.
    - the task's own, passed in ``callbacks``: :class:`~fcnlab.callbacks.records.RunRecord`
      (runs are records: the task saves its status and returns the record, so it needs the
      object, and a run without results.json is not one), ``BudgetCheckpoints`` (its paths go
      into results.json, its budgets are checked against the trainer's schedule, and with
      ``budgets: []`` it does nothing), ``SaveOnSigterm`` (resume=auto depends on it, it must
      write into the folder resume=auto searches, and the interrupted record names its file).
    - here, not a callback: :class:`AtomicCheckpointIO`, so no checkpoint (from any callback) is
      ever half written; and the switch that turns Lightning's bar off when the output is not a
      terminal, which depends on where this process writes, not on the config.

    The task's callbacks come after the configured ones: RunRecord takes the scores of an
    evaluation out of the module, and callbacks that show them (wandb_predictions) run first.
    """
    skip = skip or {}
    chosen = []
    for cb in instantiate_all(cfg.get("callbacks")):
        why = next((why for kind, why in skip.items() if isinstance(cb, kind)), None)
        if why is None:
            chosen.append(cb)
        else:
            log.info("%s from the callbacks config is not used (%s)", type(cb).__name__, why)
    chosen += list(callbacks)
    trainer_cfg = to_plain(cfg.trainer)
    plugins = _plugins(trainer_cfg.pop("plugins", None))
    progress = {}
    # Off a terminal a bar is a stream of carriage returns; PlainProgress (conf/callbacks/
    # plain_progress.yaml) prints lines instead. A bar the config asks for is kept.
    if (trainer_cfg.get("enable_progress_bar") is None and not is_interactive()
            and not any(isinstance(c, ProgressBar) for c in chosen)):
        progress["enable_progress_bar"] = False
    _iterations_to_batches(trainer_cfg, overrides)
    logger_cfg, wandb_id = _logger_group(cfg, model_name)
    trainer = instantiate(
        trainer_cfg, callbacks=chosen, logger=instantiate_all(logger_cfg, "logger") or False,
        plugins=plugins, **{**progress, **overrides},
    )
    # The ranks are known once the Trainer exists (its strategy's set_world_ranks).
    _keep_wandb_id(trainer, Path(cfg.paths.output_dir), wandb_id)
    return trainer


def _iterations_to_batches(trainer_cfg: dict, overrides: dict) -> None:
    """Keep ``val_check_interval`` in SGD iterations when gradients are accumulated.

    fcnlab counts training in iterations, one optimizer step each (``max_steps``, ``budgets``,
    the records' ``iteration`` are all ``trainer.global_step``), as Caffe's solvers count them
    with ``iter_size`` (docs/reference.md §3). Lightning counts ``val_check_interval`` in
    *batches*, so with ``accumulate_grad_batches: k`` (FCN's CVPR batch of 20 as 20 whole images
    of batch 1) the trainer is given k times the configured number, and an evaluation still falls
    every ``val_check_interval`` iterations.
    """
    k = trainer_cfg.get("accumulate_grad_batches", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches: expected a positive int, got {k!r}")
    for source in (overrides, trainer_cfg):
        interval = source.get("val_check_interval")
        if isinstance(interval, int) and not isinstance(interval, bool) and k > 1:
            source["val_check_interval"] = interval * k
            break
        if interval is not None:
            break


# ----------------------------------------------------------------------------- the run
def start_run(cfg: DictConfig) -> Path:
    """Seed every RNG (``cfg.seed``) and create the run folder; return it."""
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def fit_and_validate(trainer: L.Trainer, module: L.LightningModule, datamodule,
                     recorder: RunRecord, *, ckpt_path: str | None = None,
                     then: Callable[[], None] | None = None) -> None:
    """Fit, then score the final weights unless the last evaluation already did; then ``then``.

    The record is saved before training starts, and says ``interrupted`` (SIGTERM; re-raised,
    which Lightning turns into a clean exit) or ``failed`` (any other exception, re-raised) when
    the run ends early. Its ``finished`` state is the task's to write, with what it produced.
    """
    recorder.save()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        last = recorder.last("val")
        if last is None or last["iteration"] != trainer.global_step:
            trainer.validate(module, datamodule=datamodule)  # always score the final weights
        if then is not None:
            then()
    except SIGTERMException:
        saver = next((c for c in trainer.callbacks if isinstance(c, SaveOnSigterm)), None)
        if saver is not None and saver.saved:
            saved = "/".join(Path(saver.saved).parts[-2:])  # checkpoints/interrupted.ckpt
            error = (f"SIGTERM: state saved in {saved}; re-run the same command with "
                     f"resume=auto to continue")
        else:
            error = f"SIGTERM at iteration {trainer.global_step}: no state saved"
        recorder.save(status="interrupted", iterations=trainer.global_step, error=error)
        raise
    except BaseException as e:
        recorder.save(status="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:  # one wandb run per job, marked failed when the job is (sys.exc_info: in flight)
        finish_wandb(trainer, exit_code=1 if sys.exc_info()[0] is not None else 0)


# ----------------------------------------------------------------------------- shared pieces
CRF_SWITCHES = ("enabled", "at_end")


def crf_params(cfg: DictConfig, force: bool = False) -> dict | None:
    """The dense-CRF parameters when ``crf.enabled`` (or ``force``), else None."""
    crf = to_plain(cfg.get("crf")) or {}
    if not (crf.get("enabled") or force):
        return None
    return {k: v for k, v in crf.items() if k not in CRF_SWITCHES}


def record_compile_time(recorder: RunRecord, module: SegmentationModule) -> None:
    """With ``fast.compile``, results.json gets ``compile_s``: the wall seconds of the first
    training step and the first evaluation forward (``{"train": …, "eval": …}``), which compile.

    The record holds the module's own dict, so every later save writes what has been measured.
    """
    if module.compiled:
        recorder.record["compile_s"] = module.compile_s


def print_summary(record: dict, class_names: list[str], output_dir: Path) -> None:
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
    if record.get("train_time_s") is not None:
        print(f"time: {record['train_time_s'] / 60:.1f} min training (evaluations excluded), "
              f"{record['wall_time_s'] / 60:.1f} min in all")
    print(f"\nrun folder: {output_dir}\nresults:    {output_dir / 'results.json'}")
    ckpts = record.get("checkpoints") or {}
    if ckpts.get("last"):
        print(f"checkpoint: {ckpts['last']}")


def save_last_checkpoint(trainer: L.Trainer) -> dict:
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
