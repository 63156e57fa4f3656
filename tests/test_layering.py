"""The package's layering, read from the source: no import cycle, no import against the arrows.

Arrows run one way: entry scripts -> tasks -> module / callbacks -> models, data, metrics. An
import inside a function counts like any other (a late import hides a cycle from a plain look,
not from Python). The rules (docs: README "Layout"):

- ``models``, ``data`` and ``metrics`` import nothing from ``tasks``, ``callbacks``, ``report``
  or ``bench``: they are the science rooms every entry builds on;
- ``models`` and ``data`` do not import each other: a network never needs a data set;
- ``report`` builds no network and no data set: it imports nothing from ``models``, ``data``,
  ``module`` or ``tasks`` (it reads the records the runs wrote).

The two tests at the end plant a cycle and an upward import in a throw-away package, so the
checker is shown to catch what it is for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fcnlab"

# (importing package, imported package): forbidden edges, by top-level sub-package of fcnlab.
FORBIDDEN = {
    **{(low, high): "a science room imports nothing above it"
       for low in ("models", "data", "metrics")
       for high in ("tasks", "callbacks", "report", "bench")},
    ("models", "data"): "a network never needs a data set",
    ("data", "models"): "a data set never needs a network",
    **{("report", low): "the report reads records; it builds no network and no data set"
       for low in ("models", "data", "module", "tasks")},
}


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package`` (``__init__`` = the package)."""
    mods = {}
    for f in sorted(package.rglob("*.py")):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (functions included)."""
    mods = module_files(package)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: climb from this module's package
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import name` may name a submodule; `from mod import func` may not
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            else:
                continue
            for t in targets:
                r = resolve(t)
                # A package's __init__ re-exporting its own submodules is not an edge upward.
                if r and r != mod and not (mods[r].name == "__init__.py"
                                           and mod.startswith(r + ".")):
                    graph[mod].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _room(module: str) -> str | None:
    """``fcnlab.models.fcn`` -> ``models``; ``fcnlab.module`` -> ``module``; the root -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(graph.items()):
        for t in sorted(targets):
            why = FORBIDDEN.get((_room(mod), _room(t)))
            if why:
                out.append(f"{mod} imports {t}: {why}")
    return out


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph(SRC))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_import_runs_against_the_layers():
    found = violations(import_graph(SRC))
    assert not found, "imports against the layering rules:\n" + "\n".join(found)


def test_the_graph_sees_every_room():
    """The checker reads the real package (a wrong path would make both tests above vacuous)."""
    graph = import_graph(SRC)
    rooms = {_room(m) for m in graph}
    assert {"models", "data", "metrics", "tasks", "callbacks", "report", "bench"} <= rooms
    assert "fcnlab.models.vgg" in graph["fcnlab.models.fcn"]


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fcnlab"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


@pytest.mark.parametrize("late", [False, True], ids=["top-level", "inside-a-function"])
def test_a_planted_cycle_is_caught(tmp_path, late):
    indent = "def f():\n    " if late else ""
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "metrics/__init__.py": "",
        "metrics/boundary.py": "from fcnlab.metrics.matching import hits\n",
        "metrics/matching.py": f"{indent}from fcnlab.metrics import boundary\n",
    })
    assert cycles(import_graph(pkg)) == [["fcnlab.metrics.boundary", "fcnlab.metrics.matching"]]


@pytest.mark.parametrize("line, expected", [
    ("from fcnlab.tasks.train import train", "fcnlab.models.fcn imports fcnlab.tasks.train"),
    ("from ..data import synthetic", "fcnlab.models.fcn imports fcnlab.data.synthetic"),
    ("def late():\n    import fcnlab.report.runs", "fcnlab.models.fcn imports fcnlab.report.runs"),
])
def test_a_planted_upward_import_is_caught(tmp_path, line, expected):
    pkg = _write(tmp_path, {
        "__init__.py": "", "models/__init__.py": "", "data/__init__.py": "",
        "data/synthetic.py": "", "tasks/__init__.py": "", "tasks/train.py": "",
        "report/__init__.py": "", "report/runs.py": "",
        "models/fcn.py": line + "\n",
    })
    found = violations(import_graph(pkg))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_report_may_not_build_a_network(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "", "module.py": "", "report/__init__.py": "",
        "report/predictions.py": "from fcnlab.module import SegmentationModule\n",
    })
    assert violations(import_graph(pkg)) == [
        "fcnlab.report.predictions imports fcnlab.module: the report reads records; it builds "
        "no network and no data set"]
