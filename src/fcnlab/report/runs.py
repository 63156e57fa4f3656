"""Finding and reading the sweep's run records: job folders, failed and never-started jobs,
and the evaluations inside a record."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from fcnlab.progress import Progress

RESULTS_FILE = "results.json"  # fcnlab.callbacks.records.RESULTS_FILE (not imported: it pulls in Lightning)
MAX_DEPTH = 3
PRETRAIN_MODEL = "vgg16_classifier"  # conf/model/vgg16_classifier.yaml (task: pretrain)


@dataclass
class Run:
    """One job of the sweep: its folder, its record (None if it never wrote one), its state."""

    folder: Path
    name: str  # the folder relative to the sweep
    record: dict | None
    model: str | None
    status: str  # finished | failed | unfinished | not started
    error: str | None = None

    @property
    def config(self) -> dict:
        return (self.record or {}).get("config") or {}

    @property
    def is_eval(self) -> bool:
        return (self.record or {}).get("task") == "eval"

    @property
    def is_pretrain(self) -> bool:
        """A VGG16 classifier job (fcnlab.tasks.pretrain) of the sweep: features, not a table row."""
        return (self.record or {}).get("task") == "pretrain" or self.model == PRETRAIN_MODEL

    @property
    def protocol(self) -> str | None:
        """The experiment's ``protocol`` key (fcn_cvpr, fcn_heavy, segnet_table3), or None."""
        value = self.config.get("protocol")
        return str(value) if value else None

    def budgets(self) -> list[int] | None:
        budgets = self.config.get("budgets")
        return sorted(int(b) for b in budgets) if budgets else None

    @cached_property
    def overrides(self) -> list[str] | None:
        """The job's own command-line overrides (``.hydra/overrides.yaml``: the sweep's values
        for this job, e.g. ``model=fcn32s``, ``seed=1``), or None where Hydra wrote none."""
        try:
            items = yaml.safe_load((self.folder / ".hydra" / "overrides.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return None
        return [str(i) for i in items] if isinstance(items, list) else None

    @property
    def seed(self):
        """The run's seed: its recorded config's, else its job's ``seed=`` override."""
        if self.config.get("seed") is not None:
            return self.config["seed"]
        for item in self.overrides or []:
            key, _, value = item.partition("=")
            if key.lstrip("+~") == "seed":
                return value
        return None


def launch_settings(run: Run, source: str) -> dict[str, str] | None:
    """What the run was launched with, its seed left out, as ``{dotted key: value}``: the job's
    overrides (``source="overrides"``) or its recorded config, flattened (``"config"``). None
    when that source is missing (a job that crashed before writing its record).

    In the config, the job's own folder and path parts named after its seed (``seed3``,
    ``seed=3``: FCN-16s of seed 3 starts from ``fcn32s/seed3``) are masked, so that two runs
    differing only in their seed compare equal."""
    if source == "overrides":
        if run.overrides is None:
            return None
        items = (item.partition("=") for item in run.overrides)
        return {k.lstrip("+~"): v for k, _, v in items if k.lstrip("+~") != "seed"}
    if not run.config:
        return None
    own = {str(run.folder), str(_get(run.config, "paths.output_dir") or run.folder)}
    seed = run.seed
    pattern = re.compile(rf"(seed[=_-]?){re.escape(str(seed))}(?!\d)") if seed is not None \
        else None
    flat: dict[str, str] = {}

    def walk(value, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
            return
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for folder in own:
            text = text.replace(folder, "<job>")
        if pattern is not None:
            text = pattern.sub(r"\1<seed>", text)
        flat[key] = text

    walk({k: v for k, v in run.config.items() if k != "seed"}, "")
    return flat


def _get(d: dict | None, dotted: str, default=None):
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _last_log_line(folder: Path) -> str | None:
    for log in sorted(folder.glob("*.log")):
        try:
            text = log.read_text(errors="replace")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        except OSError:
            continue
        if lines:
            return f"{log.name}: {lines[-1][:300]}"
    return None


def _model_from_hydra(folder: Path) -> str | None:
    """The model of a job that wrote no record, from the config Hydra saved before it ran."""
    try:
        cfg = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        name = _get(cfg, "model.name")
        if isinstance(name, str):
            return name
    except (OSError, yaml.YAMLError):
        pass
    try:
        for item in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []:
            key, _, value = str(item).partition("=")
            if key.lstrip("+~") == "model":
                return value
    except (OSError, yaml.YAMLError):
        pass
    return None


def _read_run(sweep: Path, folder: Path) -> Run:
    name = str(folder.relative_to(sweep)) if folder != sweep else folder.name
    path = folder / RESULTS_FILE
    if not path.is_file():
        why = "no results.json: the job crashed before writing its record"
        if tail := _last_log_line(folder):
            why += f" (last log line: {tail})"
        return Run(folder, name, None, _model_from_hydra(folder), "failed", why)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return Run(folder, name, None, _model_from_hydra(folder), "failed",
                   f"results.json unreadable: {e}")
    status = {"finished": "finished", "failed": "failed", "running": "unfinished"}.get(
        record.get("status"), str(record.get("status")))
    error = record.get("error")
    if status == "unfinished":
        error = ("status 'running': the job was still running or was killed without a trace "
                 f"(last written after {record.get('wall_time_s', '?')} s)")
    return Run(folder, name, record, record.get("model") or _model_from_hydra(folder), status,
               error)


def find_runs(sweep: Path, skip: Path | None = None) -> list[Run]:
    """Every job folder up to ``MAX_DEPTH`` levels below ``sweep`` (the sweep itself included):
    a folder with ``results.json`` or with Hydra's ``.hydra/`` (a job that may have crashed)."""
    sweep = sweep.resolve()
    skip = skip.resolve() if skip else None
    runs = []
    # A sweep of many seeds on a network file system reads hundreds of records: say how far it is
    # (nothing for a report that takes under two seconds; plain lines in a log file).
    with Progress(f"report: reading run records under {sweep.name}", unit="runs") as progress:
        for root, dirs, files in os.walk(sweep):
            here = Path(root)
            depth = len(here.relative_to(sweep).parts)
            dirs[:] = sorted(d for d in dirs if d not in (".hydra", "checkpoints", "csv", "plots")
                             and (skip is None or (here / d).resolve() != skip))
            if depth >= MAX_DEPTH:
                dirs[:] = []
            if RESULTS_FILE in files or (here / ".hydra").is_dir():
                runs.append(_read_run(sweep, here))
                progress.update()
                dirs[:] = []  # a job's own sub-folders are not jobs
    return runs


def _sweep_overrides(sweep: Path) -> list[str]:
    """The sweep's ``key=values`` items: the command line's, then those an experiment config
    declares under ``hydra.sweeper.params`` (the command line wins on the same key)."""
    try:
        cfg = yaml.safe_load((sweep / "multirun.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    items = [str(o) for o in (_get(cfg, "hydra.overrides.task") or [])]
    given = {o.partition("=")[0].lstrip("+~") for o in items}
    params = _get(cfg, "hydra.sweeper.params") or {}
    items += [f"{k}={v}" for k, v in params.items() if k not in given]
    return items


def unstarted_jobs(sweep: Path, runs: list[Run]) -> tuple[list[Run], str | None]:
    """Models the sweep's ``multirun.yaml`` asks for that have no job folder, and a note when
    the job count differs from what it asks for."""
    overrides = _sweep_overrides(sweep)
    if not overrides:
        return [], None
    expected, countable, models = 1, True, []
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if "(" in value or "[" in value:
            countable = False  # a sweep function or a list value: not counted here
            continue
        values = value.split(",")
        expected *= len(values)
        if key == "model":
            models = values
    found = {r.model for r in runs}
    missing = [Run(sweep / f"model={m}", f"model={m}", None, m, "not started",
                   "multirun.yaml asks for this model but the sweep has no job folder for it")
               for m in models if m not in found]
    note = None
    if countable and expected != len(runs):
        note = (f"multirun.yaml asks for {expected} jobs ({' '.join(overrides)}); "
                f"{len(runs)} job folders were found")
    return missing, note


# ------------------------------------------------------------------------------ evaluations
def evaluations(run: Run, split: str, crf: bool = False) -> list[dict]:
    """The run's evaluations on ``split`` with (or without) the dense CRF, by iteration."""
    record = run.record or {}
    default_crf = bool(record.get("crf", False))  # eval runs record crf at the top level
    evals = [e for e in record.get("evaluations") or []
             if e.get("split") == split and bool(e.get("crf", default_crf)) == crf]
    return sorted(evals, key=lambda e: e.get("iteration", 0))


def best_by_mean_iou(evals: list[dict]) -> dict | None:
    def key(e):
        v = e.get("mean_iou")
        return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v
    return max(evals, key=key) if evals else None  # max keeps the earliest of equal scores


def at_iteration(evals: list[dict], iteration: int) -> dict | None:
    hits = [e for e in evals if e.get("iteration") == iteration]
    return hits[-1] if hits else None



def final_evaluation(run: Run, split: str, crf: bool = False) -> dict | None:
    """The run's last evaluation on ``split``, or None."""
    evs = evaluations(run, split, crf)
    return evs[-1] if evs else None
