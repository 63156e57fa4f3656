"""README.md's result tables are what the published folders give, never hand-copied numbers.

A folder ``docs/results/<name>/`` is written by ``python -m fcnlab.report <sweep> --publish
docs/results/<name>`` (the report, the runs' trimmed records, a manifest); README.md shows it
between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``, as
``python -m fcnlab.report.readme`` generates it. A cell edited by hand, a re-published folder
whose block was not regenerated, a published folder the front page does not show, or a block
without its folder fails here. The generator itself is tested in tests/report/test_publish.py.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from fcnlab.report.publish import MANIFEST
from fcnlab.report.readme import BLOCK, markers, render, rewrite

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"
REGENERATE = "python -m fcnlab.report.readme"


def published() -> list[Path]:
    """The published folders (a publish's leftover temp folder starts with a dot: not one)."""
    if not RESULTS.is_dir():
        return []
    return sorted(p for p in RESULTS.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_every_results_marker_has_its_folder():
    names = markers(README.read_text())
    missing = [n for n in names if not (RESULTS / n / MANIFEST).is_file()]
    assert not missing, (f"README.md has results blocks without a published folder: "
                         f"{[f'docs/results/{n}/' for n in missing]}; publish them with "
                         "`python -m fcnlab.report <sweep> --publish docs/results/<name>`")
    assert len(names) == len(set(names)), f"a results block appears twice: {names}"


def test_readme_blocks_equal_the_published_folders():
    folders = published()
    if not folders:
        pytest.skip("docs/results/ has no published folder yet: no README block to compare")
    text = README.read_text()
    blocks = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
    for folder in folders:
        assert (folder / MANIFEST).is_file(), f"{folder.relative_to(ROOT)} has no {MANIFEST}"
        assert folder.name in blocks, (
            f"docs/results/{folder.name}/ is published but README.md has no block "
            f"<!-- results:{folder.name} --> ... <!-- /results:{folder.name} -->")
    new = rewrite(text, RESULTS)
    if new != text:
        diff = "".join(difflib.unified_diff(text.splitlines(keepends=True),
                                            new.splitlines(keepends=True),
                                            "README.md", "from docs/results/"))
        pytest.fail(f"README.md's results blocks differ from the published files; run "
                    f"`{REGENERATE}`:\n{diff}")
    for folder in folders:  # the same, block by block: what the generator gives for the folder
        assert blocks[folder.name] == render(folder) + "\n\n", folder.name
