"""The SegNet table: TPAMI 2017 Table 3, scores per training budget and the best after the
last one, our row above the paper's."""

from __future__ import annotations

from fcnlab.report.paper_tables import SEGNET_TABLE3, PaperTable
from fcnlab.report.formatting import (
    DASH,
    Notes,
    fmt,
    fmt_iter,
    fmt_paper,
    iter_cell,
    md_section,
    md_table,
)
from fcnlab.report.runs import Run, _get, at_iteration, best_by_mean_iou, evaluations
from fcnlab.report.tables import Section, _csv_row, _label, _runs_for, _status_cell

CRF_ROW = "deeplab_largefov_crf"


def _gcmb_cell(scores: dict | None, metrics, decimals: int, fraction: bool) -> str:
    if scores is None:
        return DASH
    f = fmt if fraction else fmt_paper
    return " / ".join(f(scores.get(m), decimals) for m in metrics)


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
                 "max iter, as SegNet reports.")
    else:
        pairs, last = [], None
        columns = [f"final G / C / mIoU / BF (paper >{fmt_iter(paper_budgets[-1])})"]
        intro = (f"The runs have no `budgets` in their config: ours is the final `{split}` "
                 "evaluation of each run, one column, beside the paper's last column (>80K).")
    header = ["Network", "", "status"] + columns + ["max iter"]
    rows, csv_rows, used = [], [], []
    bf_missing = False

    def ours_cells(run: Run, evs: list[dict], label: str) -> tuple[list, list, dict | None]:
        cells, picked = [], []
        for b, _ in pairs:
            ev = at_iteration(evs, b)
            if ev is None and run.record is not None:
                why = f"{label}: no {split} evaluation at iteration {b}"
                cells.append(f"{DASH} {notes.add(why)}")
            else:
                cells.append(_gcmb_cell(ev, metrics, d, True))
            picked.append(ev)
        if last is not None:
            after = [e for e in evs if e.get("iteration", 0) > last]
            best = best_by_mean_iou(after)
            if best is None and run.record is not None:
                max_steps = _get(run.config, "trainer.max_steps")
                why = f"{label}: no {split} evaluation after the last budget ({last})"
                if max_steps is not None:
                    why += f"; trainer.max_steps = {max_steps}"
                cells.append(f"{DASH} {notes.add(why)}")
            else:
                cells.append(_gcmb_cell(best, metrics, d, True))
        else:
            best = evs[-1] if evs else None
            if best is None and run.record is not None:
                cells.append(f"{DASH} {notes.add(f'{label}: no {split} evaluation')}")
            else:
                cells.append(_gcmb_cell(best, metrics, d, True))
        return cells, picked, best

    for key, paper in table.rows.items():
        crf = key == CRF_ROW
        model = "deeplab_largefov" if crf else key
        candidates = _runs_for(runs, model)
        if crf:  # train runs with CRF evaluations, and CRF eval runs
            candidates = [r for r in candidates if evaluations(r, split, crf=True)]
        mine = candidates or [None]
        for run in mine:
            label = _label(paper.label, run, len(mine) > 1)
            if run is None:
                status = "not in this sweep"
                if crf and _runs_for(runs, model):
                    status = "not evaluated " + notes.add(
                        "DeepLab-LargeFOV runs are in the sweep but none has an evaluation "
                        f"with crf=true on {split}")
                cells = [DASH] * len(columns)
                max_iter, picked, best = DASH, [None] * len(pairs), None
            else:
                used.append(run)
                status = _status_cell(run, notes, paper.label)
                evs = evaluations(run, split, crf=crf)
                if crf:  # the paper computed the CRF only at the end: the last column only
                    after = [e for e in evs if last is None or e.get("iteration", 0) > last]
                    best = best_by_mean_iou(after) if last is not None else None
                    if best is None:
                        best = evs[-1] if last is None else best_by_mean_iou(evs)
                        if last is not None:
                            label += " " + notes.add(
                                f"{label}: no CRF evaluation after the last budget; the best CRF "
                                "evaluation is shown")
                    picked = [None] * len(pairs)
                    cells = ["not computed"] * len(pairs) + [_gcmb_cell(best, metrics, d, True)]
                else:
                    if run.is_eval and budgets:
                        label += " " + notes.add(
                            f"{run.name} is an eval run (one evaluation, no budgets)")
                    cells, picked, best = ours_cells(run, evs, label)
                if any(ev is not None and ev.get("bf") is None for ev in picked + [best]):
                    bf_missing = True
                max_iter = iter_cell(best)
            rows.append([label, "ours", status] + cells + [max_iter])
            for i, (b, p) in enumerate(pairs):
                csv_rows.append(_csv_row(
                    "segnet", paper.label, run, f"budget {b}", picked[i], split, crf,
                    fmt_iter(p) if p else "", paper.budgets.get(p) if p else None, p,
                    "not computed" if crf else None))
            csv_rows.append(_csv_row(
                "segnet", paper.label, run,
                f"best after {last}" if last is not None else "final", best, split, crf,
                f">{fmt_iter(paper_budgets[-1])}", paper.best, paper.max_iter))
        paper_cells = []
        for _, p in pairs:
            if p is None:
                paper_cells.append(DASH)
            elif paper.budgets.get(p) is None:
                paper_cells.append("not computed")
            else:
                paper_cells.append(_gcmb_cell(paper.budgets[p], metrics, d, False))
        paper_cells.append(_gcmb_cell(paper.best, metrics, d, False))
        rows.append(["", "paper", ""] + paper_cells + [fmt_iter(paper.max_iter)])
    if bf_missing:
        notes.add("BF (boundary F1) is – where the run's record has no 'bf' for that evaluation.")
    for n in table.notes:
        notes.add(n)
    md = md_section(table.title,
                    f"{intro} Paper: {table.source}. Percent; cells G / C / mIoU / BF.",
                    md_table(header, rows), notes.markdown())
    return Section("segnet", md, csv_rows, used)

