"""The worked examples of the docs pages (``DOC_EXAMPLES`` in tests/readme_commands.py:
docs/adding-a-model.md and docs/adding-a-dataset.md), run as written.

A fenced block preceded by ``<!-- test: write <path> -->`` is written to ``<path>``; one preceded
by ``<!-- test: run -->`` is run line by line (``python`` is this interpreter) and must exit 0.
Everything happens in a temporary copy of the top-level scripts (``train.py`` … ``params.py``) and
``conf/``, so the examples change nothing in the repository; each must train for 2 iterations
and write results.json.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from readme_commands import DOC_EXAMPLES, PAGES, page_name

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- test: (write (?P<path>\S+)|run) -->\s*\n"
                   r"```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def blocks(doc: Path) -> list[dict]:
    found = [m.groupdict() for m in BLOCK.finditer(doc.read_text())]
    assert found, f"{doc.name} has no <!-- test: ... --> blocks"
    return found


def run_doc(doc: Path, workdir: Path, env: dict) -> list[str]:
    for name in ("train.py", "eval.py", "predict.py", "export.py", "verify.py", "params.py"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, workdir / name)
    shutil.copytree(ROOT / "conf", workdir / "conf")
    ran = []
    for block in blocks(doc):
        if block["path"]:
            target = workdir / block["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block["body"])
            continue
        assert block["lang"] == "bash", "run blocks are bash"
        for line in block["body"].splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            argv = shlex.split(line, comments=True)
            if argv[0] == "python":
                argv[0] = sys.executable
            proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == 0, (f"{doc.name}: `{line}` exited {proc.returncode}:\n"
                                          f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            ran.append(line)
    return ran


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCNLAB_")}
    env.update(extra)
    return env


def _results(workdir: Path) -> dict:
    found = list((workdir / "logs" / "train" / "runs").glob("*/results.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def test_every_page_with_examples_is_run():
    """A page with `<!-- test: ... -->` blocks is in DOC_EXAMPLES (so test_doc_example_trains runs
    it), and every page listed there exists and has such blocks."""
    marked = {page_name(p) for p in PAGES if BLOCK.search(p.read_text())}
    assert marked == set(DOC_EXAMPLES), (
        f"pages with examples nobody runs: {sorted(marked - set(DOC_EXAMPLES))}; "
        f"listed without examples: {sorted(set(DOC_EXAMPLES) - marked)}")


@pytest.mark.parametrize("doc, model, data", [(d, *md) for d, md in DOC_EXAMPLES.items()])
def test_doc_example_trains(doc, model, data, tmp_path, data_dir):
    # The model example uses the synthetic data: share the session's copy (FCNLAB_DATA_DIR).
    ran = run_doc(ROOT / doc, tmp_path, _env(FCNLAB_DATA_DIR=str(data_dir)))
    assert any("train.py" in line for line in ran)
    record = _results(tmp_path)
    assert record["status"] == "finished" and record["iterations"] == 2
    assert record["model"] == model and record["data"] == data
    assert [e["iteration"] for e in record["evaluations"] if e["split"] == "val"] == [2]
