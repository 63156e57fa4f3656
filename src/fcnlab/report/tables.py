"""What the table sections share: the section, its status cells and CSV rows, which tables a
sweep gets, and the section for runs in no paper table."""

from __future__ import annotations

from dataclasses import dataclass, field

from fcnlab.report.paper_tables import METRIC_LABELS, TABLES, table_of_model
from fcnlab.report.formatting import METRICS, Notes, fmt, iter_cell, md_section, md_table
from fcnlab.report.runs import Run, final_evaluation

CSV_METRICS = METRICS
CSV_FIELDS = (["table", "network", "model", "run", "status", "column", "iteration", "split",
               "crf"] + list(CSV_METRICS) + ["paper_column", "paper_iteration"]
              + [f"paper_{m}" for m in CSV_METRICS] + ["note"])


@dataclass
class Section:
    key: str
    markdown: str
    csv_rows: list[dict] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


def choose_tables(runs: list[Run], which: str) -> list[str]:
    if which != "auto":
        return [which]
    present = [k for k in TABLES if any(table_of_model(r.model or "") == k for r in runs)]
    return present or ["fcn"]


def _status_cell(run: Run | None, notes: Notes, label: str) -> str:
    if run is None:
        return "not in this sweep"
    if run.status == "finished":
        return "finished"
    return f"{run.status} {notes.add(f'{label} ({run.name}): {run.error or run.status}')}"


def _runs_for(runs: list[Run], model: str) -> list[Run]:
    return [r for r in runs if r.model == model]


def _label(base: str, run: Run | None, many: bool) -> str:
    return f"{base} ({run.name})" if many and run is not None else base


def _pct(value):
    """Full-precision percent for the CSV; '' when missing."""
    if value is None:
        return ""
    return 100 * value


def _csv_row(table: str, network: str, run: Run | None, column: str, ev: dict | None,
             split: str, crf: bool, paper_column: str, paper_scores: dict | None,
             paper_iter: int | None, note: str | None = None) -> dict:
    """One CSV row; status and note (unless given) come from the run ("not run" without one)."""
    row = {"table": table, "network": network, "model": run.model if run else "",
           "run": run.name if run else "", "status": run.status if run else "not run",
           "column": column, "iteration": ev.get("iteration") if ev else "", "split": split,
           "crf": crf}
    for m in CSV_METRICS:
        row[m] = _pct(ev.get(m)) if ev else ""
    row["paper_column"] = paper_column
    row["paper_iteration"] = paper_iter if paper_iter is not None else ""
    for m in CSV_METRICS:
        row[f"paper_{m}"] = (paper_scores or {}).get(m, "")
    if note is None:
        note = (run.error or "") if run else ""
    row["note"] = note
    return row


def other_section(runs: list[Run], split: str) -> Section | None:
    """Runs whose model is in neither chosen table: listed, never dropped."""
    if not runs:
        return None
    notes = Notes()
    header = ["model", "run", "status", "iteration"] + [METRIC_LABELS[m] for m in CSV_METRICS]
    rows, csv_rows = [], []
    for run in runs:
        ev = final_evaluation(run, split)
        status = _status_cell(run, notes, str(run.model))
        rows.append([str(run.model), run.name, status, iter_cell(ev)]
                    + [fmt(ev.get(m) if ev else None, 2) for m in CSV_METRICS])
        csv_rows.append(_csv_row("other", str(run.model), run, "final", ev, split, False, "",
                                 None, None))
    md = md_section("Runs not in the paper's table", f"Final `{split}` evaluation, percent.",
                    md_table(header, rows), *([notes.markdown()] if notes.items else []))
    return Section("other", md, csv_rows, runs)


def features_section(runs: list[Run]) -> str:
    """The sweep's pretrained VGG16 classifier jobs: what the FCN rows were initialised from."""
    notes = Notes()
    header = ["run", "status", "iteration", "val crop accuracy", "mean class accuracy",
              "classifier (sha256)"]
    rows = []
    for run in runs:
        ev = final_evaluation(run, "val")
        classifier = (run.record or {}).get("classifier") or {}
        sha = str(classifier.get("sha256") or "")[:12]
        rows.append([run.name, _status_cell(run, notes, run.name), iter_cell(ev),
                     fmt(ev.get("accuracy") if ev else None, 1),
                     fmt(ev.get("mean_class_accuracy") if ev else None, 1),
                     f"`{classifier['path']}` ({sha})" if classifier.get("path") else "-"])
    return md_section(
        "Features: the pretrained VGG16 classifier",
        "Trained in this sweep on object-centred crops of the training split (fcnlab.tasks.pretrain; "
        "the paper's networks start from ImageNet VGG16). Rows whose initialisation names it "
        "(## Runs) started from it. Accuracy in percent on the val split's crops.",
        md_table(header, rows), *([notes.markdown()] if notes.items else []))
