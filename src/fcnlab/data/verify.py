"""Check a data set before training: read every file of every split once, list every problem.

The pure checks behind ``python verify.py data=<name> …`` (the command line is
:mod:`fcnlab.tasks.verify`): :func:`verify_datamodule` scans a built DataModule and
:func:`format_report` turns the result into the printed report (images per split, pixels per
class, the void share, then every problem).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fcnlab.errors import FcnlabError


@dataclass
class SplitReport:
    key: str
    name: str
    images: int = 0
    good: int = 0
    pixels: np.ndarray | None = None  # num_classes + 1 (void last)
    problems: list[str] = field(default_factory=list)


def verify_datamodule(datamodule) -> list[SplitReport]:
    """Scan every configured split of ``datamodule`` (a SegmentationDataModule) once."""
    reports = []
    datamodule.prepare_data()  # the synthetic data is generated here; a no-op for real data
    k = datamodule.num_classes
    for key, name in datamodule.split_names().items():
        if name is None:
            continue
        report = SplitReport(key, name, pixels=np.zeros(k + 1, np.int64))
        reports.append(report)
        try:
            dataset = datamodule.make_dataset(key, missing="keep")
        except FcnlabError as e:  # unreadable or empty list, overlapping splits...
            report.problems.append(str(e))
            try:  # still check the files of a split whose lists are inconsistent
                dataset = datamodule.make_dataset(key, missing="keep", strict=False)
            except FcnlabError:
                continue
        report.images = len(dataset)
        for index, problem, counts in dataset.scan():
            if problem:
                report.problems.append(f"{dataset.samples[index].id}: {problem}")
            else:
                report.good += 1
                report.pixels += counts
    return reports


def format_report(reports: list[SplitReport], class_names) -> str:
    lines = []
    problems = [(r.key, p) for r in reports for p in r.problems]
    for r in reports:
        bad = f", {r.images - r.good} bad" if r.images > r.good else ""
        lines.append(f"split {r.key} ({r.name}): {r.images} images{bad}")
    shown = [r for r in reports if r.pixels is not None and r.good]
    if shown:
        width = max(len(n) for n in [*class_names, "void"]) + 2
        lines.append("")
        lines.append("pixels per class (share of labelled, non-void pixels):")
        lines.append(" " * width + "".join(f"{r.key:>22}" for r in shown))
        for c, name in enumerate([*class_names, "void"]):
            cells = []
            for r in shown:
                labelled = max(int(r.pixels[:-1].sum()), 1)
                total = max(int(r.pixels.sum()), 1)
                share = r.pixels[c] / (labelled if c < len(class_names) else total)
                cells.append(f"{int(r.pixels[c]):>14,} {100 * share:5.1f}%")
            lines.append(f"{name:<{width}}" + "".join(cells))
        lines.append("(void: share of all pixels)")
        absent = [n for c, n in enumerate(class_names)
                  if any(r.key == "train" and r.pixels[c] == 0 for r in shown)]
        if absent:
            lines.append(f"classes absent from the training split: {', '.join(absent)}")
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}:")
        lines += [f"  [{key}] {p}" for key, p in problems]
    else:
        lines.append("no problems found")
    return "\n".join(lines)
