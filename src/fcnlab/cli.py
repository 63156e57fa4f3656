"""What ``train.py`` and ``eval.py`` share: user errors as one line, checked before Hydra starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from fcnlab.config import check_group_choices
from fcnlab.errors import FcnlabError


def check_argv(script: str) -> None:
    """Exit with one line if the command line names a group option that does not exist."""
    if problem := check_group_choices(Path(script).resolve().parent / "conf", sys.argv[1:]):
        sys.exit(f"error: {problem}")


def run_task(task: Callable[[DictConfig], object], cfg: DictConfig) -> None:
    """Run ``task(cfg)``; a user error ends the job with one line instead of a traceback."""
    try:
        task(cfg)
    except FcnlabError as e:
        sys.exit(f"error: {e}")
