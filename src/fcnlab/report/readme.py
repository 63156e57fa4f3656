"""README.md's result tables, generated from published folders: ``python -m fcnlab.report.readme``.

A block of README.md between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->`` is
rewritten from ``docs/results/<name>/`` (written by ``python -m fcnlab.report <sweep> --publish
docs/results/<name>``): one line saying which commands made it, at which commit, in how much
wall time and on which machine (from ``manifest.json`` and ``runs/*.json``), then the paper's
table from ``table.csv`` with ours beside the paper's, then each of the paper's findings with
its verdict on our runs from ``findings.csv``. ``--check`` rewrites nothing: it exits 1
and prints a diff when README.md is not what the folders give, so a hand-edited cell fails the
tests (tests/docs/test_results.py).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
import shlex
import sys
from pathlib import Path

from fcnlab.report.formatting import DASH, fmt_p, fmt_signed, md_table
from fcnlab.report.paper_tables import METRIC_LABELS, TABLES
from fcnlab.report.publish import MANIFEST, RUNS_DIR

BLOCK = re.compile(r"<!-- results:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /results:(?P=name) -->",
                   re.S)
OPENING = re.compile(r"<!-- results:([\w.-]+) -->")
SEGNET_SHORT = {"pixel_acc": "G", "mean_acc": "C", "mean_iou": "mIoU", "bf": "BF"}


class ReadmeError(Exception):
    """A marker without its folder or closing marker, or a folder that is not a publish."""


def _num(text: str | None, decimals: int) -> str:
    if text in ("", None):
        return DASH
    value = float(text)
    return "nan" if value != value else f"{value:.{decimals}f}"


def _ours(r: dict, metric: str, decimals: int) -> str:
    """Our value; a row averaging several runs carries its sample std, as the report prints."""
    cell = _num(r[metric], decimals)
    std = r.get(f"{metric}_std")
    return f"{cell} ± {_num(std, decimals)}" if std not in ("", None) else cell


def table_rows(rows: list[dict]) -> list[dict]:
    """The rows the README shows: each group of runs (one network's runs that differ only in
    their seed) where the CSV has groups, else each run; a paper row nobody ran says nothing."""
    if rows and "kind" in rows[0]:
        return [r for r in rows if r["kind"] == "group" and r["status"] != "not run"]
    return [r for r in rows if r["run"]]


def _network_cells(rows: list[dict]) -> list[str]:
    """The Network cell: the group's label (or the run's folder where a network has several
    runs), and any state other than finished, so a failed run's numbers never pass as a
    finished one's."""
    names = [r.get("group") or r["network"] for r in rows]
    cells = []
    for name, r in zip(names, rows):
        cell = name + (f" ({r['run']})" if names.count(name) > 1 and r["run"] else "")
        cells.append(cell + (f" ({r['status']})" if r["status"] != "finished" else ""))
    return cells


def _n_column(rows: list[dict]) -> bool:
    """Show how many runs a row averages only where some row is not a single run."""
    return any(r.get("n") not in (None, "", "1") for r in rows)


def fcn_table(rows: list[dict]) -> str:
    """CVPR 2015 Table 2's layout: each metric cell "ours (paper)"."""
    table, d = TABLES["fcn"], TABLES["fcn"].decimals
    with_n = _n_column(rows)
    header = (["Network"] + ["n"] * with_n + ["iteration"]
              + [METRIC_LABELS[m] for m in table.metrics])
    body = [[net] + ([r["n"]] if with_n else []) + [r["iteration"] or DASH]
            + [f"{_ours(r, m, d)} ({_num(r[f'paper_{m}'], d)})" for m in table.metrics]
            for net, r in zip(_network_cells(rows), rows)]
    return (f"Each cell: ours (paper), percent; ours is the final `{rows[0]['split']}` "
            "evaluation" + (", mean ± sample std over a row's n runs" if with_n else "")
            + ".\n\n" + md_table(header, body))


def segnet_table(rows: list[dict]) -> str:
    """TPAMI 2017 Table 3's last column (the best after the last budget): G / C / mIoU / BF,
    ours and the paper's side by side, with the iteration ours was picked at."""
    table, d = TABLES["segnet"], TABLES["segnet"].decimals
    last = [r for r in rows if r["column"].startswith("best after") or r["column"] == "final"]
    if not last:
        return ""
    column = last[0]["column"]
    ours = f"ours, >{column.split()[-1]} it" if column != "final" else "ours, final"
    paper = f"paper, {last[0]['paper_column'] or DASH} it"
    with_n = _n_column(last)
    header = ["Network"] + ["n"] * with_n + [ours, "iteration", paper]
    body = [[net] + ([r["n"]] if with_n else [])
            + [" / ".join(_ours(r, m, d) for m in table.metrics), r["iteration"] or DASH,
               " / ".join(_num(r[f"paper_{m}"], d) for m in table.metrics)]
            for net, r in zip(_network_cells(last), last)]
    cells = " / ".join(SEGNET_SHORT.get(m, m) for m in table.metrics)
    picked = (f"the best `{last[0]['split']}` evaluation by mean IU after iteration "
              f"{column.split()[-1]}" if column != "final"
              else f"the final `{last[0]['split']}` evaluation")
    spread = ", mean ± sample std over a row's n runs" if with_n else ""
    return f"Cells: {cells}, percent; ours is {picked}{spread}.\n\n" + md_table(header, body)


def _signed(text: str | None, decimals: int) -> str:
    return fmt_signed(None if text in ("", None) else float(text), decimals)


def findings_table(rows: list[dict]) -> str:
    """The papers' findings judged on our seeds (``findings.csv``, fcnlab.report.findings): the
    paper's difference, ours with its standard error, the one-sided p and the verdict. A finding
    whose groups the sweep did not run says nothing (as a paper row nobody ran), so a sweep of
    one network (the main job's seeds) shows its table alone."""
    rows = [r for r in rows if r["verdict"] != "not run"]
    if not rows:
        return ""
    header = ["finding (a > b in the paper)", "paper, a − b", "ours, a − b ± se", "p",
              "verdict"]
    body = []
    for r in rows:
        d = TABLES[r["table"]].decimals
        ours = (f"{_signed(r['difference'], d)} ± {_num(r['se'], d)}"
                if r["difference"] not in ("", None) else DASH)
        body.append([r["finding"] + (f" [{r['variant']}]" if r["variant"] else ""),
                     _signed(r["paper_difference"], d), ours,
                     fmt_p(float(r["p"])) if r["p"] not in ("", None) else DASH, r["verdict"]])
    return ("Findings, judged on our runs (one-sided t-test at 5% in the paper's direction: "
            "Welch between networks, paired within one network's runs; "
            "[docs/tables.md](docs/tables.md#seeds-and-findings)):\n\n" + md_table(header, body))


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _machine(m: dict) -> str:
    cpu = f"{m.get('processor') or '?'}, {m.get('cpu_count') or '?'} CPUs"
    return f"{m['gpu']} ({cpu})" if m.get("gpu") else cpu


def _unique(values) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _shell(command: str) -> str:
    """A record's command (its argv joined by spaces) as a shell line to paste: an argument the
    shell would change (``seed${seed}``, ``[a,b]``) is quoted, as its user had to."""
    return " ".join(shlex.quote(word) for word in command.split())


def provenance(manifest: dict, records: list[dict]) -> str:
    """One line: the commands, the commit, the wall time and the machine."""
    measured = [r for r in records if "commit" in r]  # jobs that wrote a record
    commands = [("python " + c if c.split()[0].endswith(".py") else c)
                for c in _unique(_shell(str(r["command"])) for r in measured if r.get("command"))]
    commands.append(manifest["report_command"])
    commits = ", ".join(f"{str(c['sha'])[:7]}" + ("+dirty" if c.get("dirty") else "")
                        for c in manifest["commits"])
    wall = sum(float(r.get("wall_time_s") or 0) for r in measured)
    machines = "; ".join(_unique(_machine(r["machine"]) for r in measured if r.get("machine")))
    line = (f"Produced by {' then '.join(f'`{c}`' for c in commands)} at commit {commits}, "
            f"{len(measured)} job(s) taking {_duration(wall)} in all, on {machines or DASH}.")
    if manifest.get("dirty"):
        line += (" **From a dirty tree** (published with `--allow-dirty`: "
                 + "; ".join(manifest.get("problems") or []) + ").")
    return line


def render(folder: Path) -> str:
    """The block's Markdown for one published folder."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise ReadmeError(f"{folder} has no {MANIFEST}: publish it with "
                          f"`python -m fcnlab.report <sweep> --publish {folder}`")
    manifest = json.loads((folder / MANIFEST).read_text())
    records = [json.loads(p.read_text()) for p in sorted((folder / RUNS_DIR).glob("*.json"))]
    with open(folder / "table.csv", newline="") as f:
        rows = table_rows(list(csv.DictReader(f)))
    tables = []
    for key, build in (("fcn", fcn_table), ("segnet", segnet_table)):
        mine = [r for r in rows if r["table"] == key]
        if mine and (text := build(mine)):
            tables.append(text)
    if (folder / "findings.csv").is_file():
        with open(folder / "findings.csv", newline="") as f:
            if text := findings_table(list(csv.DictReader(f))):
                tables.append(text)
    return "\n\n".join([provenance(manifest, records)] + tables)


def rewrite(text: str, results: Path) -> str:
    """``text`` with every results block regenerated from ``results/<name>/``."""
    opened = OPENING.findall(text)
    closed = [m.group("name") for m in BLOCK.finditer(text)]
    if unclosed := [n for n in opened if n not in closed]:
        raise ReadmeError(f"<!-- results:{unclosed[0]} --> has no <!-- /results:{unclosed[0]} -->")
    # The blank line before the closing marker ends the table for every Markdown renderer.
    return BLOCK.sub(lambda m: (f"<!-- results:{m['name']} -->\n{render(Path(results) / m['name'])}"
                                f"\n\n<!-- /results:{m['name']} -->"), text)


def markers(text: str) -> list[str]:
    """The names of the results blocks in ``text``, in order."""
    return OPENING.findall(text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fcnlab.report.readme",
        description="Rewrite README.md's blocks between <!-- results:<name> --> and "
                    "<!-- /results:<name> --> from docs/results/<name>/ (written by "
                    "`python -m fcnlab.report <sweep> --publish docs/results/<name>`).")
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="the page to rewrite (default README.md)")
    parser.add_argument("--results", type=Path, default=Path("docs/results"),
                        help="the published folders (default docs/results)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and print a diff if the page differs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        old = args.readme.read_text()
        new = rewrite(old, args.results)
    except (OSError, ReadmeError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if new == old:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            f"{args.readme} (as written)", f"{args.readme} (from {args.results})"))
        return 1
    if new != old:
        args.readme.write_text(new)
    blocks = markers(new)
    print(f"{args.readme}: {len(blocks)} results block(s)"
          + (f" ({', '.join(blocks)})" if blocks else "") + ("; rewritten" if new != old else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
