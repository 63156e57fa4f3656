"""The command line: ``python -m fcnlab.report <sweep folder> [--table ...] [--out ...]
[--publish docs/results/<name> [--allow-dirty]]``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fcnlab.report.build import build_report
from fcnlab.report.publish import MANIFEST, PublishRefused, publish


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fcnlab.report",
        description="Build the papers' tables (Markdown + CSV), metric plots and a prediction "
                    "grid from a sweep folder's records: each run's results.json and the "
                    "images it wrote into <run>/predictions/ (no network is rebuilt).")
    parser.add_argument("sweep", type=Path,
                        help="a sweep folder, e.g. logs/train/multiruns/<stamp>")
    parser.add_argument("--table", choices=("fcn", "segnet", "auto"), default="auto",
                        help="FCN CVPR 2015 Table 2, SegNet TPAMI 2017 Table 3, or auto "
                             "(every table whose models are present)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (<sweep>/report)")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="which evaluations to report (default val)")
    parser.add_argument("--images", type=_positive, default=4,
                        help="how many of the validation images each run wrote into "
                             "<run>/predictions/ the grid shows (default 4)")
    parser.add_argument("--no-predictions", action="store_true", help="skip predictions.png")
    parser.add_argument("--publish", type=Path, default=None, metavar="DIR",
                        help="then copy the report, the runs' trimmed records and a manifest "
                             "into DIR (docs/results/<name>), which README.md's tables are "
                             "generated from (python -m fcnlab.report.readme); refused when a "
                             "run's commit is +dirty or the runs' commits differ")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="with --publish: publish anyway, marked as from a dirty tree")
    args = parser.parse_args(argv)
    if args.allow_dirty and args.publish is None:
        parser.error("--allow-dirty only applies with --publish")
    # What the manifest names as the command that made the published files.
    command = shlex.join(["python", "-m", "fcnlab.report",
                          *(sys.argv[1:] if argv is None else argv)])
    started = time.time()
    try:
        result = build_report(args.sweep, args.table, args.split, args.out,
                              predictions=not args.no_predictions, num_images=args.images)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["markdown"])
    print(f"written: {result['out'] / 'table.md'}, {result['out'] / 'table.csv'}, "
          f"{len(result['plots'])} plot(s) in {result['out'] / 'plots'}"
          + (f", {result['predictions']}" if result["predictions"] else ""))
    if args.publish is not None:
        try:
            manifest = publish(result, args.publish, sweep=args.sweep, command=command,
                               allow_dirty=args.allow_dirty, built_after=started)
        except PublishRefused as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"published: {args.publish} ({len(manifest['files'])} files and {MANIFEST}"
              + ("; from a dirty tree" if manifest["dirty"] else "") + ")")
    return 0
