"""Publishing a report: ``python -m fcnlab.report <sweep> --publish docs/results/<name>``.

The README's result tables are generated (:mod:`fcnlab.report.readme`) from a folder kept in the
repository, so every published number sits beside the records it came from:

- ``table.md``, ``table.csv`` (and ``findings.csv``), ``plots/*.png``, ``predictions.png``: the
  report as built;
- ``runs/<run>.json``: each run's record, trimmed to what it did and measured (config, command,
  commit, machine, wall time, seed, pretrained weights' sha256, every evaluation); checkpoint
  paths and images stay in the sweep;
- ``manifest.json``: the sweep, the report command, the date and the runs' commits.

A number on the front page must come from committed code, so a run trained on a ``+dirty`` tree,
on an unknown commit, or on another commit than the other runs is refused unless
``allow_dirty`` is given, and then the manifest says so.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

MANIFEST = "manifest.json"
RUNS_DIR = "runs"
# What a trimmed record keeps of results.json: what the run did and measured, nothing that only
# points into the sweep folder (checkpoints, output_dir, predictions/).
KEPT = ("task", "model", "data", "status", "error", "iterations", "budgets", "evaluations",
        "config", "command", "commit", "versions", "machine", "wall_time_s")
# A file that build_report may write but this build did not is not published: its mtime must not
# be older than the build's start (minus a coarse file system's timestamp step).
MTIME_SLACK_S = 2.0


class PublishRefused(Exception):
    """A publish that would put numbers from uncommitted or mixed code in the repository."""


def record_file(run_name: str) -> str:
    """``runs/<name>.json``: a nested job folder's ``/`` becomes ``__`` (one flat folder)."""
    return f"{RUNS_DIR}/{run_name.replace('/', '__')}.json"


def _sha256(entry) -> str | None:
    return entry.get("sha256") if isinstance(entry, dict) else None


def trim_record(run) -> dict:
    """The part of a run's record that is published; a job without a record keeps its state."""
    record = run.record
    if record is None:  # crashed before writing one, or never started: the table says so too
        return {"run": run.name, "model": run.model, "status": run.status, "error": run.error}
    out = {"run": run.name, **{k: record[k] for k in KEPT if k in record}}
    out["seed"] = (record.get("config") or {}).get("seed")
    if sha := _sha256(record.get("pretrained")):
        out["pretrained_sha256"] = sha
    if sha := _sha256(record.get("classifier")):  # a pretrain job's own weights
        out["classifier_sha256"] = sha
    return out


def commit_problems(runs: list) -> list[str]:
    """Why these runs' numbers are not from one committed tree, one line per run; [] if they are."""
    problems, first = [], None
    for run in runs:
        if run.record is None:
            continue  # no record, no numbers: nothing of it is published but its state
        commit = run.record.get("commit") or {}
        sha, dirty = commit.get("sha"), commit.get("dirty")
        if dirty:
            problems.append(f"run {run.name} was trained at commit {str(sha)[:12]}+dirty "
                            "(uncommitted changes)")
        elif not sha or dirty is None:
            problems.append(f"run {run.name} has no known commit (commit {commit or 'missing'})")
        elif first is None:
            first = (run.name, sha)
        elif sha != first[1]:
            problems.append(f"run {run.name} was trained at commit {sha[:12]}, run {first[0]} "
                            f"at {first[1][:12]}: the runs' commits differ")
    return problems


def _commits(runs: list) -> list[dict]:
    seen = []
    for run in runs:
        if run.record is not None:
            c = run.record.get("commit") or {}
            c = {"sha": c.get("sha"), "dirty": c.get("dirty")}
            if c not in seen:
                seen.append(c)
    return seen


def _fresh(path: Path, built_after: float | None) -> bool:
    return path.is_file() and (built_after is None
                               or path.stat().st_mtime >= built_after - MTIME_SLACK_S)


def _fill(folder: Path, result: dict, runs: list, manifest: dict,
          built_after: float | None) -> list[str]:
    """Copy the report and write the trimmed records into ``folder``; the files written."""
    out = Path(result["out"])
    written = []
    for name in ("table.md", "table.csv"):
        shutil.copy2(out / name, folder / name)
        written.append(name)
    if _fresh(out / "findings.csv", built_after):
        shutil.copy2(out / "findings.csv", folder / "findings.csv")
        written.append("findings.csv")
    if result.get("predictions"):
        shutil.copy2(result["predictions"], folder / "predictions.png")
        written.append("predictions.png")
    # The plots this build wrote: an earlier build's plot of a metric no longer drawn stays out.
    plots = sorted(Path(p) for p in result.get("plots") or [] if str(p).endswith(".png"))
    if plots:
        (folder / "plots").mkdir()
    for p in plots:
        shutil.copy2(p, folder / "plots" / p.name)
        written.append(f"plots/{p.name}")
    (folder / RUNS_DIR).mkdir()
    for run in runs:
        name = record_file(run.name)
        if name in written:
            raise PublishRefused(f"two runs publish as {name}: rename a job folder")
        (folder / name).write_text(json.dumps(trim_record(run), indent=2) + "\n")
        written.append(name)
    manifest["files"] = written
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return written + [MANIFEST]


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Put ``tmp`` where ``dest`` is; on failure the folder published before stays as it was."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def publish(result: dict, dest: Path, *, sweep: Path, command: str, allow_dirty: bool = False,
            built_after: float | None = None) -> dict:
    """Publish what :func:`fcnlab.report.build.build_report` returned into ``dest``.

    Raises :class:`PublishRefused` (nothing written) when the runs are not all from one clean
    commit and ``allow_dirty`` is not given. Returns the manifest."""
    dest = Path(dest)
    runs = list(result.get("features") or []) + list(result.get("runs") or [])
    if not any(r.record is not None for r in runs):
        raise PublishRefused(f"no run of {sweep} wrote a record: nothing to publish")
    problems = commit_problems(runs)
    if problems and not allow_dirty:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PublishRefused(f"{problems[0]}{more}; refusing to publish (commit and re-run, or "
                             "pass --allow-dirty to publish it marked as from a dirty tree)")
    manifest = {
        "name": dest.name, "sweep": str(sweep), "report_command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tables": list(result.get("tables") or []),
        "commits": _commits(runs),
        "allow_dirty": allow_dirty, "dirty": bool(problems), "problems": problems,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")  # beside dest: same file system
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _fill(tmp, result, runs, manifest, built_after)
        _replace_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
