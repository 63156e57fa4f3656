"""The pages' structure: README.md stays a front page, every docs page is reachable from it, every
link between pages lands on a file and heading that exist, the front page's tables agree with
docs/tables.md, and docs/benchmark.md lists every target the benchmark judges.

The commands on the pages are checked in ``tests/docs/test_readme_commands.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fcnlab.report.readme import BLOCK

from readme_commands import PAGES, ROOT, page_name

README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Hand-written lines of the front page; the generated results blocks (a verdict per paper
# finding, tests/docs/test_results.py) are not counted.
FRONT_PAGE_MAX_LINES = 260
# [text](target): a Markdown link, outside code spans (the pages put no links in code)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _links(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return LINK.findall(text)


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line) up to the next ``## `` heading."""
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end != -1 else len(text)]


def test_readme_is_a_front_page():
    lines = len(BLOCK.sub("", README.read_text()).splitlines())
    assert lines <= FRONT_PAGE_MAX_LINES, (
        f"README.md has {lines} hand-written lines (at most {FRONT_PAGE_MAX_LINES}): move "
        f"detail into a "
        f"docs/ page and link it")


def test_readme_links_every_docs_page_and_only_existing_ones():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in _links(README)
              if t.split("#")[0].startswith("docs/") and t.split("#")[0].endswith(".md")}
    missing = sorted(page_name(p) for p in linked if not p.is_file())
    assert not missing, f"README.md links pages that do not exist: {missing}"
    pages = {p.resolve() for p in DOCS.glob("*.md")}
    unlinked = sorted(page_name(p) for p in pages - linked)
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("doc", PAGES, ids=page_name)
def test_links_between_pages_land(doc):
    """Every relative link lands on a file that exists and, with `#anchor`, on one of its
    headings."""
    wrong = []
    for target in _links(doc):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ... (not checked: no network)
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            wrong.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            wrong.append(f"{target}: no heading #{anchor} in {page_name(dest)}")
    assert not wrong, f"{page_name(doc)}: " + "; ".join(wrong)


@pytest.mark.parametrize("doc", PAGES, ids=page_name)
def test_pages_cite_sources_a_reader_can_open(doc):
    """No pointers a reader cannot follow: a file outside the repository, a lecture, an issue."""
    text = doc.read_text()
    for phrase in (r"REFERENCE\.md", r"\b[Tt]he lecture", r"\b[Ii]ssue \d+", r"\b[Tt]he issue"):
        assert not re.search(phrase, text), f"{page_name(doc)}: {phrase!r}"


def test_front_page_tables_agree_with_docs_tables():
    """Every number cell of the front page's hand-written tables is one of docs/tables.md, where
    the full tables and the commands that produced them are (a re-measured table changes both or
    fails). The generated results blocks are compared with their published folders instead
    (tests/docs/test_results.py)."""
    section = _section(README.read_text(), "## The papers' tables")
    full = (DOCS / "tables.md").read_text()

    def numbers(text: str) -> list[str]:
        lines = text.splitlines()
        rows = [line for line, after in zip(lines, lines[1:] + [""])  # body rows: no header,
                if line.startswith("|") and not line.startswith("|---")  # no separator
                and not after.startswith("|---")]
        cells = [c.strip() for row in rows for c in row.strip("|").split("|")]
        return [c for c in cells if re.search(r"\d", c)]

    assert len(numbers(section)) >= 30, numbers(section)  # the parser finds the cells
    written = numbers(BLOCK.sub("", section))
    assert not [c for c in written if c not in full], (
        f"front-page cells not in docs/tables.md: {[c for c in written if c not in full]}")


def test_benchmark_targets_section_names_every_judged_target():
    """docs/benchmark.md's "Targets" section names, in the words the benchmark prints, every
    target that fcnlab.bench.targets judges on the stored runs (docs/bench/*.json)."""
    from fcnlab.bench.targets import targets

    section = _section((DOCS / "benchmark.md").read_text(), "## Targets")
    judged = {t["target"] for f in sorted((DOCS / "bench").glob("*.json"))
              for t in targets(json.loads(f.read_text()))}
    assert len(judged) >= 8, judged
    missing = sorted(t for t in judged if f"`{t}`" not in section)
    assert not missing, f"targets the benchmark judges, not in docs/benchmark.md: {missing}"
