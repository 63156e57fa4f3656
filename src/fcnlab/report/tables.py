"""What the table sections share: the section, groups of repeated runs and their statistics, status
cells and CSV rows, which tables a sweep gets, and the section for runs in no paper table."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from fcnlab.report.formatting import (
    METRICS,
    Notes,
    fmt,
    iter_cell,
    iter_range,
    md_section,
    md_table,
)
from fcnlab.report.paper_tables import METRIC_LABELS, TABLES, PaperTable, table_of_model
from fcnlab.report.runs import Run, final_evaluation, launch_settings

CSV_METRICS = METRICS
# Every row is a group's (kind "group": the metrics are the mean over its runs, ``<metric>_std``
# the sample std, ``n`` the runs averaged) or one run's (kind "run", its own values, ``group``
# naming the group it belongs to). The fields before ``group`` keep their old meaning.
CSV_FIELDS = (["table", "network", "model", "run", "status", "column", "iteration", "split",
               "crf"] + list(CSV_METRICS) + ["paper_column", "paper_iteration"]
              + [f"paper_{m}" for m in CSV_METRICS] + ["note", "group", "kind", "n", "left_out"]
              + [f"{m}_std" for m in CSV_METRICS])


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # sample std (ddof=1); None for one value
    n: int


def summarise(values: list[float]) -> Stat | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return Stat(statistics.fmean(values), std, len(values))


@dataclass
class Group:
    """The runs of one table row that differ only in their seed, and what each column picked
    from each run (``evals``: column -> run name -> evaluation or None)."""

    table: str
    row: str  # the paper row's key (a model name, or the CRF row's)
    label: str  # the paper's label, and the variant where the row has several groups
    variant: str = ""  # what sets it apart from the row's other groups ("" when alone)
    runs: list[Run] = field(default_factory=list)
    evals: dict[str, dict[str, dict | None]] = field(default_factory=dict)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.status == "finished"]

    @property
    def shown(self) -> list[Run]:
        """The runs the cells are computed from: the finished ones; where none finished, the
        others' partial records, so a failed job still shows how far it got (no finding uses
        them)."""
        return self.finished or [r for r in self.runs if r.record is not None]

    @property
    def partial(self) -> bool:
        return not self.finished and bool(self.shown)

    def shown_evals(self, column: str) -> list[dict | None]:
        picked = self.evals.get(column, {})
        return [picked.get(r.name) for r in self.shown]

    def stat(self, column: str, metric: str) -> Stat | None:
        """Mean, sample std and n over the shown runs that have ``metric`` here, in percent."""
        return summarise([100 * e[metric] for e in self.shown_evals(column)
                          if e and e.get(metric) is not None])

    def values(self, column: str, metric: str) -> dict[str, float]:
        """Run name -> percent, over the finished runs with a value: what findings test."""
        picked = self.evals.get(column, {})
        return {r.name: 100 * e[metric] for r in self.finished
                if (e := picked.get(r.name)) and e.get(metric) is not None}


@dataclass
class Section:
    key: str
    markdown: str
    csv_rows: list[dict] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    # Findings' column names ("final"; "first", "last", "best") -> this section's CSV column.
    columns: dict[str, str] = field(default_factory=dict)
    reference: PaperTable | None = None


def _variant_labels(settings: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(full, short) label of each group: the settings in which the row's groups differ."""
    if len(settings) < 2:
        return [("", "")] * len(settings)
    keys = sorted(set().union(*settings))
    differ = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    labels = []
    for s in settings:
        items = [f"{k}={s[k]}" if k in s else f"{k} unset" for k in differ]
        short = [i if len(i) <= 48 else i[:45] + "..." for i in items[:3]]
        if len(items) > 3:
            short.append(f"+{len(items) - 3} more")
        labels.append((", ".join(items), ", ".join(short)))
    return labels


def group_runs(table: str, row: str, base: str, runs: list[Run]) -> list[Group]:
    """The row's runs in groups of runs launched alike but for the seed; one empty group when
    the row has no run. Settings are the jobs' overrides when every job has them, else the
    recorded configs; a job with neither (it never started) joins the row's largest group."""
    if not runs:
        return [Group(table, row, base)]
    source = "overrides" if all(r.overrides is not None for r in runs) else "config"
    buckets: dict[tuple, list[Run]] = {}
    unknown = []
    for run in runs:
        settings = launch_settings(run, source)
        if settings is None:
            unknown.append(run)
        else:
            buckets.setdefault(tuple(sorted(settings.items())), []).append(run)
    if unknown:
        largest = max(buckets, key=lambda k: len(buckets[k])) if buckets else ()
        buckets.setdefault(largest, []).extend(unknown)
    labels = _variant_labels([dict(k) for k in buckets])
    return [Group(table, row, f"{base} ({short})" if short else base, full, members)
            for members, (full, short) in zip(buckets.values(), labels)]


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


def _status_word(group: Group) -> str:
    if not group.runs:
        return "not run"
    counts = Counter(r.status for r in group.runs)
    if len(counts) == 1:
        return group.runs[0].status
    return ", ".join(f"{k} {s}" for s, k in counts.items())


def group_status(group: Group, notes: Notes) -> str:
    """The status cell: a single run's state as before; for several, how many are in each."""
    if len(group.runs) < 2 or len(group.finished) == len(group.runs):
        return _status_cell(group.runs[0] if group.runs else None, notes, group.label)
    parts = []
    for status, k in Counter(r.status for r in group.runs).items():
        marks = "".join(" " + notes.add(f"{group.label} ({r.name}): {r.error or r.status}")
                        for r in group.runs if r.status == status != "finished")
        parts.append(f"{k} {status}{marks}")
    return ", ".join(parts)


def n_cell(group: Group, notes: Notes) -> str:
    """How many runs the row's cells average, with a note on those left out or partial."""
    if not group.runs:
        return "0"
    n = len(group.shown)
    if group.partial:
        return f"{n} partial " + notes.add(
            f"{group.label}: no run finished; its cells are from {n} run(s) that did not finish "
            "(their last evaluations) and no finding uses them")
    left = [r.name for r in group.runs if r.status != "finished"]
    if n == 1:
        notes.add("n=1, no spread: a row from one run shows its values alone, without ± std.")
    if left and n:
        return f"{n} " + notes.add(f"{group.label}: {len(left)} of {len(group.runs)} runs left "
                                   f"out of the mean (not finished): {', '.join(left)}")
    return str(n)


def _pct(value):
    """Full-precision percent for the CSV; '' when missing."""
    if value is None:
        return ""
    return 100 * value


def _csv_row(table: str, network: str, run: Run | None, column: str, ev: dict | None,
             split: str, crf: bool, paper_column: str, paper_scores: dict | None,
             paper_iter: int | None, note: str | None = None) -> dict:
    """One run's CSV row; status and note (unless given) come from the run ("not run" without
    one)."""
    row = {"table": table, "network": network, "model": run.model if run else "",
           "run": run.name if run else "", "status": run.status if run else "not run",
           "column": column, "iteration": ev.get("iteration") if ev else "", "split": split,
           "crf": crf, "kind": "run"}
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


def group_csv_rows(group: Group, network: str, column: str, split: str, crf: bool,
                   paper_column: str, paper_scores: dict | None, paper_iter: int | None,
                   note: str | None = None) -> list[dict]:
    """The group's row for one column (mean, sample std, n), then each of its runs' rows."""
    evs = group.shown_evals(column)
    row = _csv_row(group.table, network, None, column, None, split, crf, paper_column,
                   paper_scores, paper_iter, note)
    its = iter_range(evs)
    row.update(model=group.runs[0].model if group.runs else "", status=_status_word(group),
               iteration=its if any(evs) else "", group=group.label, kind="group",
               n=sum(e is not None for e in evs),
               left_out=len(group.runs) - len(group.finished))
    if note is None and group.partial:
        row["note"] = "partial: no run of the group finished"
    for m in CSV_METRICS:
        st = group.stat(column, m)
        row[m] = st.mean if st else ""
        row[f"{m}_std"] = st.std if st and st.std is not None else ""
    picked = group.evals.get(column, {})
    rows = [row]
    for run in group.runs:
        rows.append(_csv_row(group.table, network, run, column, picked.get(run.name), split, crf,
                             paper_column, paper_scores, paper_iter, note)
                    | {"group": group.label})
    return rows


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


def embedded_imagenet_used(runs: list[Run]) -> list[dict]:
    """The cached embedded-ImageNet classifiers the runs started from (fcnlab.tasks.features),
    one per recipe key, with the names of the runs that used each."""
    used: dict[str, dict] = {}
    for run in runs:
        info = ((run.record or {}).get("pretrained") or {}).get("embedded_imagenet")
        if info:
            entry = used.setdefault(info["key"], {**info, "runs": []})
            entry["runs"].append(run.name)
    return list(used.values())


def features_section(runs: list[Run], cached: list[dict] = ()) -> str:
    """What the FCN rows were initialised from: the sweep's own pretraining jobs, and the cached
    embedded ImageNet classifiers its runs loaded (``model.pretrained: embedded_imagenet``)."""
    notes = Notes()
    header = ["classifier", "status", "iteration", "val crop accuracy", "mean class accuracy",
              "file (sha256)"]
    rows = []
    for run in runs:
        ev = final_evaluation(run, "val")
        classifier = (run.record or {}).get("classifier") or {}
        sha = str(classifier.get("sha256") or "")[:12]
        rows.append([run.name, _status_cell(run, notes, run.name), iter_cell(ev),
                     fmt(ev.get("accuracy") if ev else None, 1),
                     fmt(ev.get("mean_class_accuracy") if ev else None, 1),
                     f"`{classifier['path']}` ({sha})" if classifier.get("path") else "-"])
    for info in cached:
        rows.append([f"embedded_imagenet {info['key']} ({len(info['runs'])} runs)", "cached",
                     str(info.get("iterations") or "-"), fmt(info.get("accuracy"), 1), "-",
                     f"`{info['path']}` ({str(info['sha256'])[:12]})"])
    return md_section(
        "Features: the pretrained VGG16 classifier",
        "Trained on object-centred crops of synthetic images (fcnlab.tasks.pretrain; the "
        "paper's networks start from ImageNet VGG16): a job of this sweep, or the embedded "
        "ImageNet built once per recipe and cached (fcnlab.tasks.features). Rows whose "
        "initialisation names it (## Runs) started from it. Accuracy in percent on val crops.",
        md_table(header, rows), *([notes.markdown()] if notes.items else []))
