"""What ``train.py`` and ``eval.py`` share: user errors as one line, checked before Hydra starts."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fcnlab.config import check_group_choices
from fcnlab.errors import FcnlabError

log = logging.getLogger("fcnlab")


def check_argv(script: str) -> None:
    """Exit with one line if the command line names a group option that does not exist."""
    if problem := check_group_choices(Path(script).resolve().parent / "conf", sys.argv[1:]):
        sys.exit(f"error: {problem}")


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def objective(record: dict, metric: str | None) -> float | None:
    """The value a hyper-parameter sweeper optimises: ``metric`` (e.g. ``val/mean_iou``) of the
    run's last evaluation on that split, or None when no metric is asked for."""
    if not metric:
        return None
    split, _, name = metric.partition("/")
    evals = [e for e in record.get("evaluations", []) if e["split"] == split and not e.get("crf")]
    return float(evals[-1][name]) if evals else float("nan")


def run_task(task: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``task(cfg)`` and return the sweeper's objective (``optimized_metric``), if any; a
    user error ends the job with one line instead of a traceback.

    In a multirun the error is logged and re-raised as an exception: Hydra then marks this job
    failed, runs the remaining jobs, and exits non-zero at the end. (Exiting here would end the
    whole sweep at its first bad job.)
    """
    try:
        record = task(cfg)
    except FcnlabError as e:
        if _in_multirun():
            log.error("error: %s", e)
            raise
        sys.exit(f"error: {e}")
    return objective(record, cfg.get("optimized_metric"))
