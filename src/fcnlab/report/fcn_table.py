"""The FCN table: CVPR 2015 Table 2 with our numbers next to the paper's."""

from __future__ import annotations

from fcnlab.report.formatting import Notes, fmt_paper, fmt_stat, iter_range, md_section, md_table
from fcnlab.report.paper_tables import (
    FCN_EXTRA_ROWS,
    FCN_HEAVY_MEAN_IU,
    FCN_HEAVY_SOURCE,
    METRIC_LABELS,
    PYTORCH_FCN_MEAN_IU,
    PaperTable,
    reference_table,
    table_of_model,
)
from fcnlab.report.runs import Run, final_evaluation
from fcnlab.report.tables import (
    Section,
    _runs_for,
    group_csv_rows,
    group_runs,
    group_status,
    n_cell,
)


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
    """CVPR 2015 Table 2 layout; each cell "ours (paper)", ours the mean ± sample std over a
    group's runs (runs of one network that differ only in their seed) of each run's final
    evaluation.

    ``table``: the reference beside ours (Table 2 unless the runs' protocol names another)."""
    table = table or reference_table("fcn", None)
    heavy = table is not reference_table("fcn", None)
    notes = Notes()
    header = ["Network", "status", "n", "iteration"] + [METRIC_LABELS[m] for m in table.metrics]
    rows, csv_rows, used, groups = [], [], [], []
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
        for group in group_runs("fcn", model, base, _runs_for(runs, model)):
            groups.append(group)
            label = group.label
            picked = {}
            for run in group.runs:
                used.append(run)
                picked[run.name] = ev = final_evaluation(run, split)
                if ev is None and run.record is not None:
                    label += " " + notes.add(f"{run.name}: no {split} evaluation in its record")
            group.evals["final"] = picked
            status = group_status(group, notes)
            n = n_cell(group, notes)
            n_row = len(group.shown)
            cells = [f"{fmt_stat(group.stat('final', m), table.decimals, n_row)} "
                     f"({fmt_paper(paper_scores.get(m) if paper_scores else None, 1)})"
                     for m in table.metrics]
            rows.append([label, status, n, iter_range(group.shown_evals("final"))] + cells)
            csv_rows += group_csv_rows(group, base, "final", split, False,
                                       "heavy reference" if heavy else "Table 2", paper_scores,
                                       None)
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
        f"Each cell: ours (paper). Ours: the final `{split}` evaluation, percent, as mean ± "
        "sample std (ddof=1) over the row's n finished runs; a row is one network's runs that "
        "differ only in their seed (runs launched with other settings are rows of their own, "
        f"labelled by what differs). Paper: {table.source}.",
        md_table(header, rows),
        notes.markdown(),
    )
    return Section("fcn", md, csv_rows, used, groups, {"final": "final"}, table)
