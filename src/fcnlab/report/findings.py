"""The papers' findings, judged on our runs.

Each finding is data: two quantities the paper finds in one order (``a > b``), each a signed sum
of table cells (row, column, metric), so "FCN-16s > FCN-32s in mean IU", "mIoU after the last
budget > at the first" and "the CRF's BF gain > its mIoU gain" have one shape. Ours: one value per
finished run, percent. Verdicts follow the project rule (a difference is a finding only when it
is larger than the seed-to-seed spread): Welch's t-test between two groups, a paired t-test over
the runs when both sides are the same runs; one-sided at 5% in the paper's direction
("reproduced") or the opposite one ("reversed"), else "within noise"; "not judged" below two
runs a side, "not run" without a group.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from fcnlab.report.formatting import DASH, fmt_p, fmt_signed, fmt_stat, md_section, md_table
from fcnlab.report.paper_tables import FCN_TABLE2, SEGNET_TABLE3, PaperTable
from fcnlab.report.tables import Group, Section, Stat, summarise

ALPHA = 0.05
FINDINGS_FIELDS = ["table", "reference", "finding", "variant", "metric", "a", "b", "paper_a",
                   "paper_b", "paper_difference", "mean_a", "std_a", "n_a", "mean_b", "std_b",
                   "n_b", "difference", "se", "test", "t", "df", "p", "p_reversed", "verdict",
                   "runs_a", "runs_b"]


@dataclass(frozen=True)
class Term:
    row: str  # the paper row's key (a model name, or the SegNet table's CRF row)
    column: str  # "final" (FCN); "first" / "last" budget or "best" after the last (SegNet)
    metric: str
    sign: int = 1


@dataclass(frozen=True)
class Quantity:
    label: str
    terms: tuple[Term, ...]


@dataclass(frozen=True)
class Finding:
    table: str
    claim: str
    a: Quantity  # the paper finds a > b
    b: Quantity

    @property
    def paired(self) -> bool:
        """Both sides measured on the same runs: a paired test; else two groups: Welch."""
        return {t.row for t in self.a.terms} == {t.row for t in self.b.terms}

    @property
    def metrics(self) -> str:
        return ", ".join(dict.fromkeys(t.metric for t in self.a.terms + self.b.terms))


def _cell(label: str, row: str, column: str, metric: str) -> Quantity:
    return Quantity(label, (Term(row, column, metric),))


def _change(label: str, row: str, to: str, frm: str, metric: str, base: str | None = None):
    """``row``'s ``to`` column minus the ``frm`` column of ``base`` (``row`` itself by default)."""
    return Quantity(label, (Term(row, to, metric), Term(base or row, frm, metric, -1)))


_FCN = {k: row.label for k, row in FCN_TABLE2.rows.items()}
FCN_FINDINGS = tuple(
    Finding("fcn", claim, _cell(_FCN[a], a, "final", "mean_iou"),
            _cell(_FCN[b], b, "final", "mean_iou"))
    for a, b, claim in (
        ("fcn16s", "fcn32s", "FCN-16s > FCN-32s in mean IU: the 16s skip helps"),
        ("fcn8s", "fcn16s", "FCN-8s > FCN-16s in mean IU: the 8s skip helps further"),
        ("fcn32s", "fcn32s_fixed",
         "FCN-32s > FCN-32s-fixed in mean IU: fine-tuning beats fixed features"),
    ))

_SEG = {k: row.label for k, row in SEGNET_TABLE3.rows.items()}
_SHORT = {"mean_iou": "mIoU", "bf": "BF"}
_CRF, _LARGEFOV = "deeplab_largefov_crf", "deeplab_largefov"


def _leads(other: str, metric: str) -> Finding:
    """SegNet against ``other`` after the last budget, in the order Table 3 prints: SegNet
    leads every network in mIoU and BF but DeconvNet in BF (52.23 against 46.84)."""
    best = SEGNET_TABLE3.rows
    a, b = ("segnet", other)
    if best["segnet"].best[metric] < best[other].best[metric]:
        a, b = b, a
    claim = f"{_SEG[a]} > {_SEG[b]} in {_SHORT[metric]} after the last budget"
    if a != "segnet":
        claim += " (Table 3's exception to SegNet leading)"
    return Finding("segnet", claim, _cell(_SEG[a], a, "best", metric),
                   _cell(_SEG[b], b, "best", metric))


SEGNET_FINDINGS = (
    *(Finding("segnet", f"{_SEG[n]}: mIoU after the last budget > at the first budget "
                        "(metrics rise with the budget)",
              _cell("after the last", n, "best", "mean_iou"),
              _cell("first budget", n, "first", "mean_iou"))
      for n in ("segnet", _LARGEFOV, "fcn_bilinear", "fcn_learnt_deconv", "deconvnet")),
    *(_leads(other, metric) for other in (_LARGEFOV, _CRF, "fcn_bilinear", "fcn_learnt_deconv",
                                          "deconvnet") for metric in ("mean_iou", "bf")),
    Finding("segnet", f"{_SEG[_CRF]} − {_SEG[_LARGEFOV]}: the CRF's BF gain > its mIoU gain "
                      "(the CRF helps most in BF)",
            _change("BF gain", _CRF, "best", "best", "bf", _LARGEFOV),
            _change("mIoU gain", _CRF, "best", "best", "mean_iou", _LARGEFOV)),
    Finding("segnet", "FCN (learnt deconv) > FCN (bilinear) in mIoU after the last budget",
            _cell(_SEG["fcn_learnt_deconv"], "fcn_learnt_deconv", "best", "mean_iou"),
            _cell(_SEG["fcn_bilinear"], "fcn_bilinear", "best", "mean_iou")),
    Finding("segnet", "DeconvNet's late rise: its mIoU gain from the last budget to the best "
                      "after it > SegNet's",
            _change("DeconvNet gain", "deconvnet", "best", "last", "mean_iou"),
            _change("SegNet gain", "segnet", "best", "last", "mean_iou")),
)
FINDINGS = {"fcn": FCN_FINDINGS, "segnet": SEGNET_FINDINGS}


def _paper_scores(table: PaperTable, t: Term) -> dict | None:
    row = table.rows.get(t.row)
    if row is None:
        return None
    if t.column == "final":
        return row.scores
    if t.column == "best":
        return row.best
    budgets = sorted(row.budgets)
    return row.budgets.get(budgets[0 if t.column == "first" else -1]) if budgets else None


def paper_value(table: PaperTable, q: Quantity) -> float | None:
    """The quantity from the paper's numbers (None where the paper has no such cell)."""
    total = 0.0
    for t in q.terms:
        scores = _paper_scores(table, t)
        if not scores or scores.get(t.metric) is None:
            return None
        total += t.sign * scores[t.metric]
    return total


def _ours(q: Quantity, section: Section, variant: str) -> dict[str, float] | None:
    """One value per finished run (percent), by run name, or None when a group is missing.
    Terms on two rows are matched by run (the CRF row reads the same runs as the row without
    it), or by seed where the two rows are different runs (a CRF eval run)."""
    parts: list[tuple[int, dict[str, float], Group]] = []
    for t in q.terms:
        group = next((g for g in section.groups if g.row == t.row and g.variant == variant
                      and g.runs), None)
        column = section.columns.get(t.column)
        if group is None or column is None:
            return None
        parts.append((t.sign, group.values(column, t.metric), group))
    if len({id(g) for _, _, g in parts}) > 1 and not set.intersection(
            *(set(v) for _, v, _ in parts)):
        bridged = []
        for sign, values, group in parts:
            seeds = [str(r.seed) for r in group.finished]
            by_seed = {f"seed {r.seed}": values[r.name] for r in group.finished
                       if r.name in values and seeds.count(str(r.seed)) == 1}
            bridged.append((sign, by_seed, group))
        parts = bridged
    keys = set.intersection(*(set(v) for _, v, _ in parts))
    return {k: sum(sign * v[k] for sign, v, _ in parts) for k in sorted(keys)}


@dataclass
class Judged:
    finding: Finding
    variant: str
    reference: str
    paper_a: float | None
    paper_b: float | None
    a: dict[str, float] | None
    b: dict[str, float] | None
    stat_a: Stat | None = None
    stat_b: Stat | None = None
    diff: float | None = None
    se: float | None = None
    t: float | None = None
    df: float | None = None
    p: float | None = None  # one-sided, in the paper's direction (a > b)
    p_reversed: float | None = None  # one-sided, the other way
    test: str = ""
    verdict: str = "not run"


def _test(judged: Judged, a: list[float], b: list[float], paired: bool) -> None:
    from scipy import stats  # only here: the report imports without SciPy until it judges

    if paired:
        d = [x - y for x, y in zip(a, b)]
        judged.diff, judged.se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))
        judged.test, run = "paired t-test", (lambda alt: stats.ttest_rel(a, b, alternative=alt))
    else:
        judged.diff = statistics.fmean(a) - statistics.fmean(b)
        judged.se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        judged.test = "Welch t-test"
        run = (lambda alt: stats.ttest_ind(a, b, equal_var=False, alternative=alt))
    if judged.se == 0:  # every run alike on both sides: no spread, any difference stands
        judged.t = math.copysign(math.inf, judged.diff) if judged.diff else math.nan
        judged.p = 0.0 if judged.diff > 0 else 1.0
        judged.p_reversed = 0.0 if judged.diff < 0 else 1.0
    else:
        greater, less = run("greater"), run("less")
        judged.t, judged.df = float(greater.statistic), float(greater.df)
        judged.p, judged.p_reversed = float(greater.pvalue), float(less.pvalue)
    judged.verdict = ("reproduced" if judged.p < ALPHA else
                      "reversed" if judged.p_reversed < ALPHA else "within noise")


def judge(finding: Finding, section: Section, variant: str = "") -> Judged:
    table = section.reference
    ref = table.title.split(":")[0] if table else ""
    judged = Judged(finding, variant, ref, paper_value(table, finding.a) if table else None,
                    paper_value(table, finding.b) if table else None,
                    _ours(finding.a, section, variant), _ours(finding.b, section, variant))
    if judged.a is None or judged.b is None:
        return judged  # "not run"
    if finding.paired:  # the runs measured on both sides
        keys = sorted(set(judged.a) & set(judged.b))
        a, b = [judged.a[k] for k in keys], [judged.b[k] for k in keys]
    else:
        a, b = list(judged.a.values()), list(judged.b.values())
    judged.stat_a, judged.stat_b = summarise(a), summarise(b)
    n = min(len(a), len(b))
    if n < 2:
        judged.verdict = f"not judged (n={n}: " + (
            "no spread)" if n else "no finished run has these values)")
    elif any(math.isnan(v) for v in a + b):
        judged.verdict = "not judged (nan among the values)"
    else:
        _test(judged, a, b, finding.paired)
    return judged


def judge_sections(sections: list[Section]) -> list[Judged]:
    """Every finding of each paper-table section, once per variant its groups ran."""
    out = []
    for section in sections:
        for finding in FINDINGS.get(section.key, ()) if section.reference else ():
            rows = {t.row for t in finding.a.terms + finding.b.terms}
            variants = sorted({g.variant for g in section.groups if g.row in rows and g.runs})
            out += [judge(finding, section, v) for v in variants or [""]]
    return out


def _ours_cell(j: Judged, d: int) -> str:
    if j.a is None or j.b is None:
        return DASH
    na, nb = (j.stat_a.n if j.stat_a else 0), (j.stat_b.n if j.stat_b else 0)
    n = f"paired, n={na}" if j.finding.paired else f"n={na}, {nb}"
    return (f"{j.finding.a.label} {fmt_stat(j.stat_a, d)}, {j.finding.b.label} "
            f"{fmt_stat(j.stat_b, d)} ({n})")


def _test_cell(j: Judged) -> str:
    if j.p is None:
        return DASH
    name = "Welch" if j.test.startswith("Welch") else "paired"
    df = f", df = {j.df:.1f}" if j.df is not None else ""
    text = f"{name} t = {j.t:.2f}{df}, p = {fmt_p(j.p)}"
    return text + (f"; opposite direction p = {fmt_p(j.p_reversed)}"
                   if j.verdict == "reversed" else "")


def findings_markdown(judged: list[Judged], decimals: dict[str, int]) -> str:
    header = ["finding", "paper", "ours", "difference ± se", "test (one-sided)", "verdict"]
    many = len({(j.finding.table, j.reference) for j in judged}) > len(
        {j.finding.table for j in judged})
    rows = []
    for j in judged:
        d = decimals.get(j.finding.table, 2)
        f = j.finding
        claim = f.claim + (f" [{j.variant}]" if j.variant else "") + (
            f" ({j.reference})" if many else "")
        paper = (f"{f.a.label} {j.paper_a:.{d}f}, {f.b.label} {j.paper_b:.{d}f} "
                 f"({fmt_signed(j.paper_a - j.paper_b, d)})"
                 if j.paper_a is not None and j.paper_b is not None else DASH)
        diff = (f"{fmt_signed(j.diff, d)} ± {j.se:.{d}f}" if j.diff is not None else DASH)
        rows.append([claim, paper, _ours_cell(j, d), diff, _test_cell(j), j.verdict])
    return md_section(
        "Findings: the papers' claims, judged on our seeds",
        "Each finding: two quantities in percent, in the paper's order (a > b). Ours: mean ± "
        "sample std over each group's finished runs (one network's runs that differ only in "
        "their seed; SegNet's last column is each run's own best after the last budget), and "
        "the difference of the means ± its standard error. Between two networks: Welch's "
        "t-test (`scipy.stats.ttest_ind(equal_var=False)`); on the same runs (two columns of "
        "one network, or the CRF against the same runs without it): a paired t-test over the "
        "runs (`scipy.stats.ttest_rel`). One-sided at "
        f"{ALPHA:.0%}: **reproduced** when the test in the paper's direction rejects, "
        "**reversed** when the test the other way does (its p shown too), **within noise** "
        "otherwise; p is the paper's direction's. **not judged (n=1: no spread)** where a side "
        "has fewer than two runs, **not run** where a group is missing. A group launched with "
        "other settings (not only the seed) is judged on its own, its settings in [ ].",
        md_table(header, rows) if rows else "No paper table in this report.")


def findings_csv_rows(judged: list[Judged]) -> list[dict]:
    """One row per judged finding: FINDINGS_FIELDS, percent at full precision, "" for none."""
    rows = []
    for j in judged:
        f, sa, sb = j.finding, j.stat_a, j.stat_b
        paper_diff = (None if j.paper_a is None or j.paper_b is None
                      else round(j.paper_a - j.paper_b, 6))  # the paper prints 1-2 decimals
        values = [f.table, j.reference, f.claim, j.variant, f.metrics, f.a.label, f.b.label,
                  j.paper_a, j.paper_b, paper_diff, sa and sa.mean, sa and sa.std,
                  sa.n if sa else 0, sb and sb.mean, sb and sb.std, sb.n if sb else 0, j.diff,
                  j.se, j.test, j.t, j.df, j.p, j.p_reversed, j.verdict, ";".join(j.a or {}),
                  ";".join(j.b or {})]
        rows.append({k: "" if v is None else v for k, v in zip(FINDINGS_FIELDS, values)})
    return rows
