"""The FCN table: CVPR 2015 Table 2 with our numbers next to the paper's."""

from __future__ import annotations

from fcnlab.report.paper_tables import (
    FCN_EXTRA_ROWS,
    FCN_HEAVY_MEAN_IU,
    FCN_HEAVY_SOURCE,
    METRIC_LABELS,
    PYTORCH_FCN_MEAN_IU,
    TABLES,
)
from fcnlab.report.formatting import Notes, fmt, fmt_paper, iter_cell, md_section, md_table
from fcnlab.report.runs import Run, final_evaluation
from fcnlab.report.tables import Section, _csv_row, _label, _runs_for, _status_cell


def fcn_section(runs: list[Run], split: str) -> Section:
    """CVPR 2015 Table 2 layout; each cell "ours (paper)", ours from the final evaluation."""
    table = TABLES["fcn"]
    notes = Notes()
    header = ["Network", "status", "iteration"] + [METRIC_LABELS[m] for m in table.metrics]
    rows, csv_rows, used = [], [], []
    keys = list(table.rows) + [m for m in FCN_EXTRA_ROWS if _runs_for(runs, m)]
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
            csv_rows.append(_csv_row("fcn", base, run, "final", ev, split, False, "Table 2",
                                     paper_scores, None))
    heavy = ", ".join(f"{k} {v}" for k, v in FCN_HEAVY_MEAN_IU.items())
    port = ", ".join(f"{k} {v}" for k, v in PYTORCH_FCN_MEAN_IU.items())
    notes.add(f"For reference, not in Table 2: {FCN_HEAVY_SOURCE}: {heavy}; "
              f"wkentaro/pytorch-fcn: {port}.")
    md = md_section(
        table.title,
        f"Each cell: ours (paper). Ours: the final `{split}` evaluation of each run, percent. "
        f"Paper: {table.source}.",
        md_table(header, rows),
        notes.markdown(),
    )
    return Section("fcn", md, csv_rows, used)
