"""The SegNet table: TPAMI 2017 Table 3, scores per training budget and the best after the
last one, our row above the paper's."""

from __future__ import annotations

from fcnlab.report.formatting import (
    DASH,
    Notes,
    fmt_iter,
    fmt_paper,
    fmt_stat,
    iter_range,
    md_section,
    md_table,
)
from fcnlab.report.paper_tables import SEGNET_TABLE3, PaperTable
from fcnlab.report.runs import Run, _get, at_iteration, best_by_mean_iou, evaluations
from fcnlab.report.tables import (
    Group,
    Section,
    _runs_for,
    group_csv_rows,
    group_runs,
    group_status,
    n_cell,
)

CRF_ROW = "deeplab_largefov_crf"


def _gcmb_cell(scores: dict | None, metrics, decimals: int) -> str:
    """The paper's G / C / mIoU / BF."""
    if scores is None:
        return DASH
    return " / ".join(fmt_paper(scores.get(m), decimals) for m in metrics)


def _stat_cell(group: Group, column: str, metrics, decimals: int) -> str:
    """Ours: G / C / mIoU / BF, each mean ± std over the group's runs; "–" with no evaluation."""
    if not any(group.shown_evals(column)):
        return DASH
    n_row = len(group.shown)
    return " / ".join(fmt_stat(group.stat(column, m), decimals, n_row) for m in metrics)


def _header_budgets(runs: list[Run], notes: Notes) -> list[int] | None:
    found = [tuple(b) for r in runs if (b := r.budgets())]
    if not found:
        return None
    common = max(set(found), key=found.count)
    for r in runs:
        b = r.budgets()
        if b and tuple(b) != common:
            notes.add(f"{r.name} has budgets {b}, the table's columns use {list(common)}")
    return list(common)


def segnet_section(runs: list[Run], split: str) -> Section:
    """TPAMI 2017 Table 3 layout: per budget G / C / mIoU / BF, then the best after the last."""
    table: PaperTable = SEGNET_TABLE3
    notes = Notes()
    d = table.decimals
    metrics = table.metrics
    members = [r for r in runs if r.model in table.rows]
    budgets = _header_budgets([r for r in members if not r.is_eval], notes)
    paper_budgets = sorted(next(iter(table.rows.values())).budgets)
    if budgets:
        if len(budgets) != len(paper_budgets):
            notes.add(f"our budgets {budgets} and the paper's {paper_budgets} are paired by "
                      "position; a paper budget without a partner is not shown, and a budget of ours "
                      "without one shows – for the paper")
        pairs = [(b, paper_budgets[i] if i < len(paper_budgets) else None)
                 for i, b in enumerate(budgets)]
        last = budgets[-1]
        columns = [f"{b} it (paper {fmt_iter(p)}) G / C / mIoU / BF" for b, p in pairs]
        columns.append(f">{last} it (paper >{fmt_iter(paper_budgets[-1])}) G / C / mIoU / BF")
        intro = (f"Ours: `{split}` evaluations at each budget (iteration == budget), and the best "
                 f"evaluation by mean IU after the last budget ({last}) with its iteration as "
                 "max iter, as SegNet reports; the best point is chosen per run, then averaged "
                 "over the row's runs (max iter: the range of the points chosen).")
    else:
        pairs, last = [], None
        columns = [f"final G / C / mIoU / BF (paper >{fmt_iter(paper_budgets[-1])})"]
        intro = (f"The runs have no `budgets` in their config: ours is the final `{split}` "
                 "evaluation of each run, one column, beside the paper's last column (>80K).")
    header = ["Network", "", "status", "n"] + columns + ["max iter"]
    rows, csv_rows, used, groups = [], [], [], []
    bf_missing = False
    best_col = f"best after {last}" if last is not None else "final"
    cols = [f"budget {b}" for b, _ in pairs] + [best_col]

    def pick(run: Run, evs: list[dict], label: str) -> tuple[list[dict | None], list[str]]:
        """The run's evaluation at each budget and its best after the last (the best chosen
        per run, by mean IU), and the note marks for those missing."""
        picked, marks = [], []
        for b, _ in pairs:
            picked.append(ev := at_iteration(evs, b))
            missing = ev is None and run.record is not None
            marks.append(notes.add(f"{label} ({run.name}): no {split} evaluation at iteration "
                                   f"{b}") if missing else "")
        if last is not None:
            best = best_by_mean_iou([e for e in evs if e.get("iteration", 0) > last])
            why = f"{label} ({run.name}): no {split} evaluation after the last budget ({last})"
            if (max_steps := _get(run.config, "trainer.max_steps")) is not None:
                why += f"; trainer.max_steps = {max_steps}"
        else:
            best = evs[-1] if evs else None
            why = f"{label} ({run.name}): no {split} evaluation"
        picked.append(best)
        marks.append(notes.add(why) if best is None and run.record is not None else "")
        return picked, marks

    for key, paper in table.rows.items():
        crf = key == CRF_ROW
        model = "deeplab_largefov" if crf else key
        candidates = _runs_for(runs, model)
        if crf:  # train runs with CRF evaluations, and CRF eval runs
            candidates = [r for r in candidates if evaluations(r, split, crf=True)]
        for group in group_runs("segnet", key, paper.label, candidates):
            groups.append(group)
            label = group.label
            if not group.runs:
                status = "not in this sweep"
                if crf and _runs_for(runs, model):
                    status = "not evaluated " + notes.add(
                        "DeepLab-LargeFOV runs are in the sweep but none has an evaluation "
                        f"with crf=true on {split}")
                rows.append([label, "ours", status, "0"] + [DASH] * len(columns) + [DASH])
            else:
                picked: dict[str, list] = {}
                marks: list[set[str]] = [set() for _ in cols]
                for run in group.runs:
                    used.append(run)
                    evs = evaluations(run, split, crf=crf)
                    if crf:  # the paper computed the CRF only at the end: the last column only
                        after = [e for e in evs if last is None or e.get("iteration", 0) > last]
                        best = best_by_mean_iou(after) if last is not None else None
                        if best is None:
                            best = evs[-1] if last is None else best_by_mean_iou(evs)
                            if last is not None:
                                label += " " + notes.add(
                                    f"{label} ({run.name}): no CRF evaluation after the last "
                                    "budget; the best CRF evaluation is shown")
                        picked[run.name] = [None] * len(pairs) + [best]
                        continue
                    if run.is_eval and budgets:
                        label += " " + notes.add(
                            f"{run.name} is an eval run (one evaluation, no budgets)")
                    picked[run.name], run_marks = pick(run, evs, label)
                    for i, m in enumerate(run_marks):
                        marks[i].add(m)
                group.evals = {c: {name: p[i] for name, p in picked.items()}
                               for i, c in enumerate(cols)}
                status = group_status(group, notes)
                n_runs = n_cell(group, notes)
                cells = [(_stat_cell(group, c, metrics, d) + "".join(
                    f" {m}" for m in sorted(marks[i]) if m)) for i, c in enumerate(cols)]
                if crf:
                    cells[:len(pairs)] = ["not computed"] * len(pairs)
                if any(e is not None and e.get("bf") is None
                       for c in cols for e in group.shown_evals(c)):
                    bf_missing = True
                rows.append([label, "ours", status, n_runs] + cells
                            + [iter_range(group.shown_evals(best_col))])
            for i, (b, p) in enumerate(pairs):
                csv_rows += group_csv_rows(
                    group, paper.label, f"budget {b}", split, crf, fmt_iter(p) if p else "",
                    paper.budgets.get(p) if p else None, p, "not computed" if crf else None)
            csv_rows += group_csv_rows(group, paper.label, best_col, split, crf,
                                       f">{fmt_iter(paper_budgets[-1])}", paper.best,
                                       paper.max_iter)
        paper_cells = []
        for _, p in pairs:
            if p is None:
                paper_cells.append(DASH)
            elif paper.budgets.get(p) is None:
                paper_cells.append("not computed")
            else:
                paper_cells.append(_gcmb_cell(paper.budgets[p], metrics, d))
        paper_cells.append(_gcmb_cell(paper.best, metrics, d))
        rows.append(["", "paper", "", ""] + paper_cells + [fmt_iter(paper.max_iter)])
    if bf_missing:
        notes.add("BF (boundary F1) is – where the run's record has no 'bf' for that evaluation.")
    for n in table.notes:
        notes.add(n)
    md = md_section(table.title,
                    f"{intro} Paper: {table.source}. Percent; cells G / C / mIoU / BF, each the "
                    "mean ± sample std (ddof=1) over the row's n finished runs; a row is one "
                    "network's runs that differ only in their seed (runs launched with other "
                    "settings are rows of their own, labelled by what differs).",
                    md_table(header, rows), notes.markdown())
    # The columns the findings name: the first and last budget, and the best after the last.
    named = {"best": best_col}
    if pairs:
        named.update(first=cols[0], last=cols[len(pairs) - 1])
    return Section("segnet", md, csv_rows, used, groups, named, table)

