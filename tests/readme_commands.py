"""The shell commands of README.md and docs/*.md (:data:`PAGES`), as a newcomer would copy them.

Used by ``tests/docs/test_readme_commands.py``. A *command* is a line of a fenced code block, or an
inline code span, whose first word is one of :data:`COMMAND_WORDS` (``python``, ``make``, ``pip``
...). Trailing ``# comments`` are dropped and whitespace is normalised, so the same command
written twice is one entry (:func:`extract` for one page, :func:`extract_all` over the pages).

A fenced block right after ``<!-- test: run -->`` is a worked example that
``tests/docs/test_docs_examples.py`` runs line by line (in the pages of :data:`DOC_EXAMPLES`);
its commands are marked ``example=True``.

``python -m tool`` written inline with no arguments is a *mention* of the tool in prose (“`python
-m fcnlab.bench` measures …”), not a runnable line; it is kept with ``mention=True``.

Run ``python tests/readme_commands.py`` to print every command and where it is.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The pages whose commands are checked: the front page, then every docs page.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The docs pages with worked examples that tests/docs/test_docs_examples.py runs, and what each
# must train: (model name, data name) as results.json records them.
DOC_EXAMPLES = {
    "docs/adding-a-model.md": ("tiny_decoder", "synthetic"),
    "docs/adding-a-dataset.md": ("fcn8s", "folder"),
}
RUN_MARK = "<!-- test: run -->"
COMMAND_WORDS = ("python", "python3", "make", "pip", "wandb", ".venv/bin/python", ".venv/bin/pip")
SHELL_LANGS = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
PLACEHOLDER = re.compile(r"<([^<>\n]*)>")


@dataclass(frozen=True)
class Command:
    line: str          # the command, comment dropped, whitespace normalised
    where: str         # "README.md:123" (first occurrence)
    fenced: bool       # in a fenced block (else an inline code span)
    comment: str = ""  # the trailing "# ..." comment of a fenced line, if any
    mention: bool = False
    example: bool = False  # in a `<!-- test: run -->` block: test_docs_examples.py runs it

    @property
    def page(self) -> str:
        """``docs/usage.md`` for a command found at ``docs/usage.md:42``."""
        return self.where.rsplit(":", 1)[0]

    @property
    def argv(self) -> list[str]:
        """The words, each ``<placeholder>`` kept as one word (``<32s run>`` has a space)."""
        protected = PLACEHOLDER.sub(lambda m: "<" + m.group(1).replace(" ", "\0") + ">", self.line)
        return [w.replace("\0", " ") for w in shlex.split(protected)]


def _is_command(text: str) -> bool:
    first = text.split(maxsplit=1)[0] if text.strip() else ""
    return first in COMMAND_WORDS


def _split_comment(line: str) -> tuple[str, str]:
    """``python x.py a=1  # note`` -> (``python x.py a=1``, ``note``); a quoted ``#`` stays."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def _lineno(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def page_name(doc: Path) -> str:
    """``README.md``, ``docs/usage.md``: the page as a test id names it."""
    return doc.relative_to(ROOT).as_posix() if doc.is_relative_to(ROOT) else doc.name


def is_run_block(text: str, fence_start: int) -> bool:
    """Whether the fenced block starting at ``fence_start`` follows a ``<!-- test: run -->``."""
    before = text[:fence_start].rstrip().splitlines()
    return bool(before) and before[-1].strip() == RUN_MARK


def fenced_shell_lines(doc: Path, with_examples: bool = True) -> list[tuple[str, int, str]]:
    """(lang, line number, line) of every non-blank, non-comment line of every shell block
    (without the worked examples' ``<!-- test: run -->`` blocks if ``with_examples`` is false)."""
    text = doc.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group("lang") not in SHELL_LANGS:
            continue
        if not with_examples and is_run_block(text, m.start()):
            continue
        start = _lineno(text, m.start("body"))
        for i, line in enumerate(m.group("body").splitlines()):
            if line.strip() and not line.lstrip().startswith("#"):
                out.append((m.group("lang"), start + i, line))
    return out


def extract(doc: Path) -> list[Command]:
    """Every command of ``doc``, in order of first appearance, without duplicates."""
    text = doc.read_text()
    name = page_name(doc)
    found: dict[str, Command] = {}

    def add(cmd: Command) -> None:
        found.setdefault(cmd.line, cmd)

    # Fenced blocks: every line that starts with a command word (in any block: an unlabelled
    # block of program output never does), commented or not.
    spans = []
    for m in FENCE.finditer(text):
        spans.append((m.start(), m.end()))
        start = _lineno(text, m.start("body"))
        example = is_run_block(text, m.start())
        for i, raw in enumerate(m.group("body").splitlines()):
            line, comment = _split_comment(raw.strip())
            if line and _is_command(line):
                add(Command(" ".join(line.split()), f"{name}:{start + i}", True, comment,
                            example=example))
    # Inline code spans outside the fenced blocks (they may wrap over a line break).
    outside = list(text)
    for a, b in spans:
        outside[a:b] = " " * (b - a)
    outside = "".join(outside)
    for m in INLINE.finditer(outside):
        span = " ".join(m.group(1).split())
        words = span.split()
        if len(words) < 2 or not _is_command(span):  # `make`, `wandb`: a word, not a command
            continue
        mention = len(words) == 3 and words[1] == "-m"
        add(Command(span, f"{name}:{_lineno(text, m.start())}", False, mention=mention))
    return list(found.values())


def extract_all(pages: list[Path] | None = None) -> list[Command]:
    """Every command of ``pages`` (default :data:`PAGES`), the first occurrence of each. A
    command written on two pages is checked once; a prose *mention* of a tool, a worked example's
    line and a commented line stay apart from the plain command, since each is checked its own
    way."""
    found: dict[tuple, Command] = {}
    for doc in pages or PAGES:
        for c in extract(doc):
            found.setdefault((c.line, c.mention, c.example, c.comment), c)
    return list(found.values())


def entry_point(cmd: Command) -> str:
    """What a command runs: ``train.py``, ``-m fcnlab.report``, ``make test``, ``pip install``..."""
    argv = cmd.argv
    if argv[0] in ("python", "python3", ".venv/bin/python"):
        if len(argv) > 2 and argv[1] == "-m":
            return f"-m {argv[2]}"
        return argv[1] if len(argv) > 1 else "python"
    if argv[0] == "make":
        targets = [a for a in argv[1:] if "=" not in a]
        return "make " + (targets[0] if targets else "")
    if argv[0] in ("pip", ".venv/bin/pip"):
        return "pip " + argv[1]
    return argv[0]


if __name__ == "__main__":
    for doc in PAGES:
        for c in extract(doc):
            kind = "example" if c.example else (
                "fenced" if c.fenced else ("mention" if c.mention else "inline"))
            print(f"{c.where:28} {kind:8} {c.line}" + (f"   # {c.comment}" if c.comment else ""))
