"""Check a data set before training: ``python -m fcnlab.data verify data=<name> [overrides]``.

Composes the real config (``conf/train.yaml`` under ``--conf``, default ``conf`` in the working
directory, as ``python -m fcnlab.models`` does), builds the configured DataModule, reads every
image and label of every split once and reports *every* bad file (not only the first), then a
summary: images per split, pixels per class, the void share. Exit status 0 when all is well, 1 when
any file or list is bad, 2 when the configuration itself is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcnlab.errors import FcnlabError

SPLIT_KEYS = ("train", "val", "test")


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


def compose_config(conf_dir: Path, overrides: list[str]):
    """The composed ``train`` config, with Hydra's runtime set so ``${hydra:...}`` resolves."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import fcnlab.config  # noqa: F401  (resolvers)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = os.getcwd()  # never used: verify writes nothing
        cfg.hydra.runtime.cwd = cfg.hydra.runtime.cwd or os.getcwd()
        cfg.hydra.job.id = "verify"
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fcnlab.data",
                                     description="Data set tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="read every file of every split; list all problems",
                            description=__doc__.splitlines()[0])
    verify.add_argument("--conf", type=Path, default=Path("conf"), help="the Hydra config folder")
    verify.add_argument("overrides", nargs="*", help="e.g. data=voc paths.data_dir=/data")
    args = parser.parse_args(argv)

    from fcnlab.config import check_group_choices, instantiate

    if not (args.conf / "train.yaml").is_file():
        print(f"error: no train.yaml in --conf {args.conf}; run from the repository root or pass "
              "--conf", file=sys.stderr)
        return 2
    message = check_group_choices(args.conf, args.overrides)
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 2
    try:
        cfg = compose_config(args.conf, args.overrides)
        datamodule = instantiate(cfg.data.datamodule)
        class_names = list(datamodule.class_names)
    except FcnlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"data={cfg.data.name}: {type(datamodule).__name__}, {len(class_names)} classes")
    reports = verify_datamodule(datamodule)
    print(format_report(reports, class_names))
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
