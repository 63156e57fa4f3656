"""What the entry scripts share: user errors as one line, checked before Hydra starts.

Every entry that builds from the Hydra config (``train.py``, ``eval.py``, ``predict.py``,
``export.py``, ``verify.py``, ``params.py``) is a ``@hydra.main`` wrapper of a task function:
``key=value`` overrides are parsed by Hydra, ``--help`` is Hydra's (the config with its
defaults), and :func:`check_argv` / :func:`run_task` turn the user's mistakes into one line,
``error: …``. Exit status 1 unless the error says otherwise (``exit_status``: ``verify.py``
exits 2 for a configuration it cannot build, 1 for bad files). Hydra's errors while composing
(an unknown key: ``+key=value`` adds one) keep Hydra's message and exit 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig

from fcnlab.config import check_group_choices
from fcnlab.errors import FcnlabError

log = logging.getLogger("fcnlab")


def fail(message: str, status: int = 1) -> NoReturn:
    """End the process with ``error: <message>`` on stderr and exit status ``status``."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _syntax_problem(e: OverrideParseException) -> str:
    """Hydra's several-line parse error as one line: the override, what the parser saw."""
    lines = [line.strip() for line in e.message.splitlines()]
    detail = next((line for line in lines if line and line != "^"
                   and not line.startswith(("Error parsing override", "See "))), "")
    url = next((line.split()[1] for line in lines if line.startswith("See ")), "")
    return (f"{e.override}: not a valid override ({detail}); expected key=value in Hydra's "
            f"override syntax{f', see {url}' if url else ''}")


def check_argv(script: str, status: int = 1) -> None:
    """Exit with one line if an override on the command line is not valid Hydra syntax, or names
    a group option that does not exist (``model=nope``: the line lists the options).

    The command line is split by Hydra's own argument parser (the one ``@hydra.main`` uses) and
    each override parsed by Hydra's override grammar: this only runs them first, so the user sees
    one line instead of Hydra's several. ``conf/`` is the folder next to ``script``, where
    ``@hydra.main(config_path="conf")`` finds it.
    """
    overrides = get_args_parser().parse_args(sys.argv[1:]).overrides
    try:
        OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        fail(_syntax_problem(e), status)
    if problem := check_group_choices(Path(script).resolve().parent / "conf", overrides):
        fail(problem, status)


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
    user error ends the job with one line instead of a traceback, with the error's
    ``exit_status`` (1 when it has none).

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
        fail(str(e), getattr(e, "exit_status", 1))
    return objective(record or {}, cfg.get("optimized_metric"))
