"""The FCN table: CVPR 2015 Table 2 with our numbers next to the paper's."""

from __future__ import annotations

from fcnlab.report.paper_tables import (
    PaperTable,
    FCN_EXTRA_ROWS,
    FCN_HEAVY_MEAN_IU,
    FCN_HEAVY_SOURCE,
    METRIC_LABELS,
    PYTORCH_FCN_MEAN_IU,
    reference_table,
    table_of_model,
)
from fcnlab.report.formatting import Notes, fmt, fmt_paper, iter_cell, md_section, md_table
from fcnlab.report.runs import Run, final_evaluation
from fcnlab.report.tables import Section, _csv_row, _label, _runs_for, _status_cell


def fcn_sections(runs: list[Run], split: str) -> list[Section]:
    """One FCN section per reference the runs' protocols call for: Table 2 for the CVPR protocol
    (and runs without one), the released models' numbers for ``protocol: fcn_heavy``."""
    groups: dict[str, tuple[PaperTable, list[Run]]] = {}
    for run in runs:
        if table_of_model(run.model or "") == "fcn":
            table = reference_table("fcn", run.protocol)
            groups.setdefault(table.title, (table, []))[1].append(run)
    if not groups:
        return [fcn_section([], split)]
    return [fcn_section(members, split, table) for table, members in groups.values()]


def fcn_section(runs: list[Run], split: str, table: PaperTable | None = None) -> Section:
    """CVPR 2015 Table 2 layout; each cell "ours (paper)", ours from the final evaluation.

    ``table``: the reference beside ours (Table 2 unless the runs' protocol names another)."""
    table = table or reference_table("fcn", None)
    heavy = table is not reference_table("fcn", None)
    notes = Notes()
    header = ["Network", "status", "iteration"] + [METRIC_LABELS[m] for m in table.metrics]
    rows, csv_rows, used = [], [], []
    keys = list(table.rows) + [m for m in FCN_EXTRA_ROWS
                               if m not in table.rows and _runs_for(runs, m)]
    for model in keys:
        paper = table.rows.get(model)
        base = paper.label if paper else FCN_EXTRA_ROWS[model]
        paper_scores = paper.scores if paper else None
        if paper is None:
            base += " " + notes.add(
                f"{FCN_EXTRA_ROWS[model]} is not in Table 2; {FCN_HEAVY_SOURCE}: "
                f"{FCN_HEAVY_MEAN_IU[model]} mean IU.")
        mine = _runs_for(runs, model) or [None]
        for run in mine:
            label = _label(base, run, len(mine) > 1)
            ev = None
            if run is not None:
                used.append(run)
                ev = final_evaluation(run, split)
                if ev is None and run.record is not None:
                    label += " " + notes.add(f"{run.name}: no {split} evaluation in its record")
            status = _status_cell(run, notes, base)
            cells = [f"{fmt(ev.get(m) if ev else None, table.decimals)} "
                     f"({fmt_paper(paper_scores.get(m) if paper_scores else None, 1)})"
                     for m in table.metrics]
            rows.append([label, status, iter_cell(ev)] + cells)
            csv_rows.append(_csv_row("fcn", base, run, "final", ev, split, False,
                                     "heavy reference" if heavy else "Table 2",
                                     paper_scores, None))
    port = ", ".join(f"{k} {v}" for k, v in PYTORCH_FCN_MEAN_IU.items())
    if heavy:
        notes.add("These runs follow the heavy protocol (experiment=fcn_heavy_paper), so they "
                  "are compared with its released models, which print mean IU only; "
                  f"wkentaro/pytorch-fcn's training of it: {port}. Table 2's CVPR protocol "
                  "(experiment=fcn_table_paper) scores about 5 points lower.")
    else:
        numbers = ", ".join(f"{k} {v}" for k, v in FCN_HEAVY_MEAN_IU.items())
        notes.add(f"For reference, not in Table 2: {FCN_HEAVY_SOURCE}: {numbers}; "
                  f"wkentaro/pytorch-fcn: {port}.")
    md = md_section(
        table.title,
        f"Each cell: ours (paper). Ours: the final `{split}` evaluation of each run, percent. "
        f"Paper: {table.source}.",
        md_table(header, rows),
        notes.markdown(),
    )
    return Section("fcn", md, csv_rows, used)
