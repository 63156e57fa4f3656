"""Runs -> the papers' tables: ``python -m fcnlab.report <sweep folder>``.

Reads every ``results.json`` under a sweep folder (Hydra's multirun dir: ``<sweep>/<job>/``;
searched up to three levels deep) and writes, by default into ``<sweep>/report/``:

- ``table.md`` / ``table.csv``: the paper's table layout with our numbers next to the paper's
  (``fcnlab.report.paper_tables``), every run tied to its command, commit, machine and wall time, and
  the protocol differences that can be read from the records. Runs of one network that differ
  only in their seed are one row: each cell the mean ± sample std over them, with n;
- a findings section in ``table.md`` and ``findings.csv``: each of the papers' findings (FCN-16s >
  FCN-32s, ...) judged on those seeds with Welch's or a paired t-test (``fcnlab.report.findings``);
- ``plots/<metric>.png``: each metric against iteration, one line per run;
- ``predictions.png``: the first few validation images, their ground truth and every model's
  prediction, tiled from the images each run wrote into ``<run>/predictions/`` at its last
  evaluation (:mod:`fcnlab.callbacks.prediction_images`).

The report reads records only: it never builds a network or a data module, nor imports torch.

Nothing is silently left out: a job folder without ``results.json``, a failed or unfinished run,
a model the sweep asked for but never started, missing prediction images or a missing metric
all appear as rows or numbered notes. Scores are fractions in the records and percent in the
tables; the CSV keeps full precision, the Markdown rounds as the paper prints (FCN 1 decimal,
SegNet 2).

Layout: ``runs`` (job folders and their records), ``formatting`` (cells, Markdown, notes),
``tables`` (what the table sections share: groups of seeds, their statistics, CSV rows),
``fcn_table`` and ``segnet_table`` (the papers' tables), ``findings`` (the papers' findings,
judged), ``protocol`` (commands, machines, protocol differences), ``plots``, ``predictions``,
``build`` (:func:`build_report`) and ``cli`` (:func:`main`).
"""

from fcnlab.report.build import build_report
from fcnlab.report.cli import main
from fcnlab.report.fcn_table import fcn_section, fcn_sections
from fcnlab.report.findings import FINDINGS, FINDINGS_FIELDS, Finding, judge_sections
from fcnlab.report.formatting import DASH, Notes, fmt, fmt_iter, fmt_paper, fmt_stat, md_table
from fcnlab.report.plots import PLOT_METRICS, write_plots
from fcnlab.report.predictions import read_index, write_predictions
from fcnlab.report.protocol import protocol_items, protocol_section
from fcnlab.report.runs import (
    MAX_DEPTH,
    RESULTS_FILE,
    Run,
    at_iteration,
    best_by_mean_iou,
    evaluations,
    find_runs,
    launch_settings,
    unstarted_jobs,
)
from fcnlab.report.segnet_table import CRF_ROW, segnet_section
from fcnlab.report.tables import (
    CSV_FIELDS,
    CSV_METRICS,
    Group,
    Section,
    choose_tables,
    group_runs,
    other_section,
)

__all__ = [
    "CRF_ROW", "CSV_FIELDS", "CSV_METRICS", "DASH", "FINDINGS", "FINDINGS_FIELDS", "MAX_DEPTH",
    "PLOT_METRICS", "RESULTS_FILE", "Finding", "Group", "Notes", "Run", "Section", "at_iteration",
    "best_by_mean_iou", "build_report", "choose_tables", "evaluations", "fcn_section",
    "fcn_sections", "find_runs", "fmt", "fmt_iter", "fmt_paper", "fmt_stat", "group_runs",
    "judge_sections", "launch_settings", "main", "md_table", "other_section", "protocol_items",
    "protocol_section", "read_index", "segnet_section", "unstarted_jobs", "write_plots",
    "write_predictions",
]
