"""fcnlab.report.findings: the papers' findings judged on seeds, with verdicts checked against
statistics worked out here from their textbook formulas (NumPy means and ddof=1 variances, the
Welch–Satterthwaite degrees of freedom, Student's t survival function), not through the
scipy.stats tests the report calls.

Sweeps are written by hand in the new layout ``<sweep>/<model>/seed<k>/results.json``, each job
with the ``.hydra/overrides.yaml`` Hydra writes; the values are chosen so that each verdict kind
occurs: reproduced, reversed, within noise, not judged (n=1) and not run, for Welch's test
(two networks) and the paired test (two columns of one network, the CRF against its runs).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fcnlab.report import build_report
from fcnlab.report.findings import FINDINGS, paper_value
from fcnlab.report.paper_tables import FCN_TABLE2, SEGNET_TABLE3, TABLES

ALPHA = 0.05


def _ev(iteration: int, miou: float, bf: float | None = None, crf: bool | None = None) -> dict:
    e = {"split": "val", "iteration": iteration, "pixel_acc": 0.5 + miou / 2,
         "mean_acc": miou + 0.1, "mean_iou": miou, "fw_iou": 0.6}
    if bf is not None:
        e["bf"] = bf
    if crf is not None:
        e["crf"] = crf
    return e


def _job(sweep: Path, model: str, seed: int, evaluations: list[dict], *, budgets=(),
         status: str = "finished", extra: tuple[str, ...] = ()) -> Path:
    """One job of a seed sweep: its record and the overrides Hydra saved for it."""
    folder = sweep / model / f"seed{seed}"
    (folder / ".hydra").mkdir(parents=True)
    overrides = ["experiment=fcn_table_embedded", f"model={model}", f"seed={seed}", *extra]
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    record = {"task": "train", "model": model, "status": status, "data": "synthetic",
              "command": "train.py -m experiment=fcn_table_embedded seed=0,1,2",
              "evaluations": evaluations, "wall_time_s": 1.0,
              "config": {"seed": seed, "budgets": list(budgets), "model": {"name": model},
                         "trainer": {"max_steps": 8}}}
    if status != "finished":
        record["error"] = "RuntimeError: planted"
    (folder / "results.json").write_text(json.dumps(record))
    return folder


def _findings(out: Path) -> dict[str, dict]:
    return {r["finding"] + (f" [{r['variant']}]" if r["variant"] else ""): r
            for r in csv.DictReader((out / "findings.csv").open())}


def _md_row(markdown: str, first: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{markdown}")


def _welch(a, b) -> tuple[float, float, float, float, float]:
    """Difference, its se, t, Welch–Satterthwaite df and the one-sided p (a > b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, se, diff / se, df, stats.t.sf(diff / se, df)


def _paired(a, b) -> tuple[float, float, float, float]:
    d = np.asarray(a, float) - np.asarray(b, float)
    se = d.std(ddof=1) / math.sqrt(len(d))
    return d.mean(), se, d.mean() / se, stats.t.sf(d.mean() / se, len(d) - 1)


def test_every_finding_is_in_the_papers_order():
    """a > b in the paper's own numbers, for each of the 3 FCN and 18 SegNet findings."""
    assert len(FINDINGS["fcn"]) == 3 and len(FINDINGS["segnet"]) == 18
    for key, findings in FINDINGS.items():
        for f in findings:
            assert paper_value(TABLES[key], f.a) > paper_value(TABLES[key], f.b), f.claim
    crf = next(f for f in FINDINGS["segnet"] if "BF gain" in f.claim)
    assert crf.paired and paper_value(SEGNET_TABLE3, crf.a) == pytest.approx(40.79 - 32.77)
    exception = [f.claim for f in FINDINGS["segnet"] if "exception" in f.claim]
    assert exception == [("DeconvNet > SegNet in BF after the last budget (Table 3's exception "
                          "to SegNet leading)")]


# Mean IU (fractions) of the final evaluation, seeds 0, 1, 2.
FCN_MIOU = {
    "fcn32s_fixed": [0.20, 0.21, 0.22],  # above FCN-32s: "reversed"
    "fcn32s": [0.10, 0.11, 0.12],
    "fcn16s": [0.15, 0.16, 0.17],  # 5 points above FCN-32s, spread 1: "reproduced"
    "fcn8s": [0.13, 0.17, 0.19],  # a third of a point above FCN-16s, spread 3: "within noise"
}


def test_fcn_verdicts_by_welchs_test(tmp_path):
    sweep = tmp_path / "sweep"
    for model, values in FCN_MIOU.items():
        for seed, v in enumerate(values):
            _job(sweep, model, seed, [_ev(4, v / 2), _ev(8, v)])
    result = build_report(sweep, table="fcn", out=tmp_path / "r", predictions=False)
    found = _findings(tmp_path / "r")
    pct = {m: [100 * v for v in vals] for m, vals in FCN_MIOU.items()}
    for claim, a, b, verdict in (
            ("FCN-16s > FCN-32s in mean IU: the 16s skip helps", "fcn16s", "fcn32s",
             "reproduced"),
            ("FCN-8s > FCN-16s in mean IU: the 8s skip helps further", "fcn8s", "fcn16s",
             "within noise"),
            ("FCN-32s > FCN-32s-fixed in mean IU: fine-tuning beats fixed features", "fcn32s",
             "fcn32s_fixed", "reversed")):
        row = found[claim]
        diff, se, t, df, p = _welch(pct[a], pct[b])
        assert row["verdict"] == verdict and row["test"] == "Welch t-test"
        assert float(row["difference"]) == pytest.approx(diff)
        assert float(row["se"]) == pytest.approx(se)
        assert float(row["t"]) == pytest.approx(t)
        assert float(row["df"]) == pytest.approx(df)
        assert float(row["p"]) == pytest.approx(p)
        assert float(row["p_reversed"]) == pytest.approx(1 - p)
        assert (p < ALPHA, 1 - p < ALPHA) == (verdict == "reproduced", verdict == "reversed")
        assert row["n_a"] == row["n_b"] == "3"
        assert float(row["mean_a"]) == pytest.approx(np.mean(pct[a]))
        assert float(row["std_a"]) == pytest.approx(np.std(pct[a], ddof=1))
        assert float(row["paper_a"]) == FCN_TABLE2.rows[a].scores["mean_iou"]
        assert row["runs_a"] == ";".join(f"{a}/seed{k}" for k in range(3))
    md = result["markdown"]
    assert "Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`)" in md
    assert "`scipy.stats.ttest_rel`" in md
    # 16s against 32s: 16.0 ± 1.0 against 11.0 ± 1.0; difference 5.0 ± sqrt(2/3).
    assert _md_row(md, "FCN-16s > FCN-32s in mean IU: the 16s skip helps")[1:] == [
        "FCN-16s 62.4, FCN-32s 59.4 (+3.0)", "FCN-16s 16.0 ± 1.0, FCN-32s 11.0 ± 1.0 (n=3, 3)",
        "+5.0 ± 0.8", "Welch t = 6.12, df = 4.0, p = 0.0018", "reproduced"]
    reversed_row = _md_row(md, "FCN-32s > FCN-32s-fixed in mean IU: fine-tuning beats fixed "
                               "features")
    assert reversed_row[3] == "-10.0 ± 0.8" and "opposite direction p = <0.001" in reversed_row[4]


def test_not_judged_with_one_seed_and_not_run_without_a_group(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, v in enumerate(FCN_MIOU["fcn32s"]):
        _job(sweep, "fcn32s", seed, [_ev(8, v)])
    _job(sweep, "fcn16s", 0, [_ev(8, 0.3)])
    result = build_report(sweep, table="fcn", out=tmp_path / "r", predictions=False)
    found = _findings(tmp_path / "r")
    one = found["FCN-16s > FCN-32s in mean IU: the 16s skip helps"]
    assert one["verdict"] == "not judged (n=1: no spread)"
    assert (one["n_a"], one["n_b"], one["p"], one["difference"]) == ("1", "3", "", "")
    assert found["FCN-8s > FCN-16s in mean IU: the 8s skip helps further"]["verdict"] == "not run"
    assert found["FCN-32s > FCN-32s-fixed in mean IU: fine-tuning beats fixed features"][
        "verdict"] == "not run"
    md = result["markdown"]
    assert "n=1, no spread" in md
    row = _md_row(md, "FCN-16s")
    assert row[1:4] == ["finished", "1", "8"] and row[6] == "30.0 (62.4)"  # the value alone
    assert _md_row(md, "FCN-32s")[4] == "55.5 ± 0.5 (89.1)"  # pixel acc: 0.5 + mean IU / 2
    assert _md_row(md, "FCN-8s > FCN-16s in mean IU: the 8s skip helps further")[2:] == [
        "–", "–", "–", "not run"]


# SegNet table, budgets [2, 4]: mean IU at budget 2, at 4, and the points after 4 by seed.
SEGNET_RUNS = {
    # rises with the budget, every seed: paired "reproduced"; the best after 4 is at 6, 6, 8
    "segnet": {2: [0.30, 0.32, 0.31], 4: [0.35, 0.35, 0.35], 6: [0.40, 0.45, 0.41],
               8: [0.35, 0.36, 0.47]},
    # falls after the first budget, every seed: paired "reversed"
    "fcn_bilinear": {2: [0.40, 0.41, 0.42], 4: [0.35, 0.36, 0.37], 6: [0.30, 0.31, 0.33]},
    # up for two seeds, down for one: paired "within noise"
    "deeplab_largefov": {2: [0.30, 0.35, 0.25], 4: [0.30, 0.30, 0.30], 6: [0.33, 0.31, 0.29]},
}
DEEPLAB_BF = [0.20, 0.22, 0.21]  # at 6, without the CRF
# With the CRF, at 6: BF +6, +5, +7 and mIoU +1, +2, 0 over the same runs without it.
CRF_AT_6 = {"mean_iou": [0.34, 0.33, 0.29], "bf": [0.26, 0.27, 0.28]}


def _segnet_sweep(sweep: Path) -> None:
    for model, by_iter in SEGNET_RUNS.items():
        for seed in range(3):
            evs = [_ev(i, v[seed], bf=0.1 + v[seed] / 2) for i, v in by_iter.items()]
            if model == "deeplab_largefov":
                evs[-1]["bf"] = DEEPLAB_BF[seed]
                evs.append(_ev(6, CRF_AT_6["mean_iou"][seed], bf=CRF_AT_6["bf"][seed], crf=True))
            _job(sweep, model, seed, evs, budgets=(2, 4))


def test_segnet_paired_verdicts_and_cells(tmp_path):
    sweep = tmp_path / "sweep"
    _segnet_sweep(sweep)
    result = build_report(sweep, table="segnet", out=tmp_path / "r", predictions=False)
    found = _findings(tmp_path / "r")
    best = {m: [100 * max(v[i][s] for i in v if i > 4) for s in range(3)]
            for m, v in SEGNET_RUNS.items()}
    first = {m: [100 * x for x in v[2]] for m, v in SEGNET_RUNS.items()}
    for model, label, verdict in (("segnet", "SegNet", "reproduced"),
                                  ("fcn_bilinear", "FCN", "reversed"),
                                  ("deeplab_largefov", "DeepLab-LargeFOV", "within noise")):
        row = found[f"{label}: mIoU after the last budget > at the first budget (metrics rise "
                    "with the budget)"]
        diff, se, t, p = _paired(best[model], first[model])
        assert (row["verdict"], row["test"]) == (verdict, "paired t-test")
        assert float(row["difference"]) == pytest.approx(diff)
        assert float(row["se"]) == pytest.approx(se)
        assert float(row["t"]) == pytest.approx(t)
        assert float(row["df"]) == 2
        assert float(row["p"]) == pytest.approx(p)
    # The CRF: BF gain 6, 5, 7 against mIoU gain 1, 2, 0, paired over the same runs.
    crf = found["DeepLab-LargeFOV-denseCRF − DeepLab-LargeFOV: the CRF's BF gain > its mIoU gain "
                "(the CRF helps most in BF)"]
    bf_gain = [100 * (c - b) for c, b in zip(CRF_AT_6["bf"], DEEPLAB_BF)]
    miou_gain = [100 * (c - b) for c, b in zip(CRF_AT_6["mean_iou"], SEGNET_RUNS[
        "deeplab_largefov"][6])]
    diff, se, t, p = _paired(bf_gain, miou_gain)
    assert (crf["verdict"], crf["test"]) == ("reproduced", "paired t-test")
    assert float(crf["difference"]) == pytest.approx(diff) == pytest.approx(5.0)
    assert float(crf["p"]) == pytest.approx(p)
    assert float(crf["paper_difference"]) == pytest.approx((40.79 - 32.77) - (54.74 - 53.88))
    # Between networks: Welch's test on each run's best after the last budget.
    lead = found["SegNet > DeepLab-LargeFOV in mIoU after the last budget"]
    assert lead["verdict"] == "reproduced" and lead["test"] == "Welch t-test"
    assert float(lead["p"]) == pytest.approx(_welch(best["segnet"], best["deeplab_largefov"])[4])
    for claim in ("SegNet > DeconvNet in mIoU after the last budget",
                  "FCN (learnt deconv) > FCN (bilinear) in mIoU after the last budget",
                  ("DeconvNet's late rise: its mIoU gain from the last budget to the best "
                   "after it > SegNet's")):
        assert found[claim]["verdict"] == "not run"

    # Cells: mean ± std of each run's own best after 4 (iterations 6, 6, 8), n = 3.
    md = result["markdown"]
    row = _md_row(md, "SegNet")
    assert row[2:4] == ["finished", "3"]
    b = np.array(best["segnet"])
    cell = [0.5 * b + 50, b + 10, b, 10 + b / 2]  # G, C, mIoU, BF as _ev and _segnet_sweep
    assert row[6] == " / ".join(f"{x.mean():.2f} ± {x.std(ddof=1):.2f}" for x in cell)
    assert row[7] == "6–8"
    assert "chosen per run, then averaged" in md
    rows = list(csv.DictReader((tmp_path / "r" / "table.csv").open()))
    group = next(r for r in rows if r["network"] == "SegNet" and r["kind"] == "group"
                 and r["column"] == "best after 4")
    assert (group["n"], group["left_out"], group["run"], group["iteration"]) == ("3", "0", "",
                                                                                 "6–8")
    assert float(group["mean_iou"]) == pytest.approx(b.mean())
    assert float(group["mean_iou_std"]) == pytest.approx(b.std(ddof=1))
    runs = [r for r in rows if r["network"] == "SegNet" and r["kind"] == "run"
            and r["column"] == "best after 4"]
    assert [(r["run"], r["iteration"], r["group"]) for r in runs] == [
        ("segnet/seed0", "6", "SegNet"), ("segnet/seed1", "6", "SegNet"),
        ("segnet/seed2", "8", "SegNet")]
    assert [float(r["mean_iou"]) for r in runs] == pytest.approx(list(b))


def test_no_spread_at_all_is_judged_by_the_difference(tmp_path):
    """Every seed equal on both sides (se 0): a difference stands, none is within noise."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        _job(sweep, "fcn32s", seed, [_ev(8, 0.1)])
        _job(sweep, "fcn16s", seed, [_ev(8, 0.2)])
        _job(sweep, "fcn8s", seed, [_ev(8, 0.2)])
    build_report(sweep, table="fcn", out=tmp_path / "r", predictions=False)
    found = _findings(tmp_path / "r")
    assert found["FCN-16s > FCN-32s in mean IU: the 16s skip helps"]["verdict"] == "reproduced"
    assert found["FCN-8s > FCN-16s in mean IU: the 8s skip helps further"][
        "verdict"] == "within noise"


def test_groups_that_differ_in_more_than_the_seed_are_judged_apart(tmp_path):
    """A second setting of every network is its own group, judged against its own kind only;
    a failed seed is left out of the mean and counted."""
    sweep = tmp_path / "sweep"
    aligned = ("model.net.geometry=aligned",)
    for seed, (v32, v16) in enumerate(zip(FCN_MIOU["fcn32s"], FCN_MIOU["fcn16s"])):
        _job(sweep, "fcn32s", seed, [_ev(8, v32)])
        _job(sweep, "fcn16s", seed, [_ev(8, v16)])
        _job(sweep / "aligned", "fcn32s", seed, [_ev(8, v16)], extra=aligned)
        _job(sweep / "aligned", "fcn16s", seed, [_ev(8, v32)], extra=aligned)
    _job(sweep, "fcn16s", 3, [_ev(4, 0.9)], status="failed")
    result = build_report(sweep, table="fcn", out=tmp_path / "r", predictions=False)
    md = result["markdown"]
    plain = _md_row(md, "FCN-16s (model.net.geometry unset)")
    assert plain[1].startswith("3 finished, 1 failed [") and plain[2].startswith("3 [")
    assert "FCN-16s (model.net.geometry unset): 1 of 4 runs left out of the mean (not " \
           "finished): fcn16s/seed3" in md
    assert plain[6] == "16.0 ± 1.0 (62.4)"  # seed 3's 90.0 is not averaged in
    assert _md_row(md, "FCN-16s (model.net.geometry=aligned)")[6] == "11.0 ± 1.0 (62.4)"
    found = _findings(tmp_path / "r")
    claim = "FCN-16s > FCN-32s in mean IU: the 16s skip helps"
    assert found[f"{claim} [model.net.geometry unset]"]["verdict"] == "reproduced"
    assert found[f"{claim} [model.net.geometry=aligned]"]["verdict"] == "reversed"
    rows = list(csv.DictReader((tmp_path / "r" / "table.csv").open()))
    (group,) = [r for r in rows if r["kind"] == "group"
                and r["group"] == "FCN-16s (model.net.geometry unset)"]
    assert (group["n"], group["left_out"], group["status"]) == ("3", "1", "3 finished, 1 failed")
