"""The command line: ``python -m fcnlab.report <sweep folder> [--table ...] [--out ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnlab.report.build import build_report


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
    args = parser.parse_args(argv)
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
    return 0
