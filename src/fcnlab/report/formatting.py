"""Formatting: percent cells as the papers print them, Markdown tables and numbered notes."""

from __future__ import annotations

import math

METRICS = ("pixel_acc", "mean_acc", "mean_iou", "fw_iou", "bf")  # the CSV's and the plots'
DASH = "–"


def fmt(value, decimals: int) -> str:
    """A fraction as percent with the paper's decimals; None -> "–"."""
    if value is None:
        return DASH
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{100 * value:.{decimals}f}"


def fmt_paper(value, decimals: int) -> str:
    return DASH if value is None else f"{value:.{decimals}f}"


def fmt_iter(n: int | None) -> str:
    if n is None:
        return DASH
    return f"{n // 1000}K" if n >= 1000 and n % 1000 == 0 else str(n)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Notes:
    """Numbered notes, so every gap in a table points at its reason."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"{i}. {t}" for i, t in enumerate(self.items, 1))


def iter_cell(ev: dict | None) -> str:
    """An evaluation's iteration for a table cell; "–" without one."""
    return str(ev["iteration"]) if ev else DASH


def iter_range(evs) -> str:
    """The iterations of a group's evaluations: one number, or "min–max" where they differ."""
    its = sorted({e["iteration"] for e in evs if e})
    if not its:
        return DASH
    return str(its[0]) if len(its) == 1 else f"{its[0]}{DASH}{its[-1]}"


def fmt_stat(stat, decimals: int, n_row: int | None = None) -> str:
    """A group's cell, in percent: "mean ± std" (sample std), the value alone for one run, "–"
    for none; "(n=k)" is added where fewer runs than the row's ``n_row`` have this value."""
    if stat is None:
        return DASH
    text = f"{stat.mean:.{decimals}f}"
    if stat.n > 1:
        text += f" ± {stat.std:.{decimals}f}"
    if n_row is not None and stat.n < n_row:
        text += f" (n={stat.n})"
    return text


def fmt_signed(value: float | None, decimals: int) -> str:
    return DASH if value is None else f"{value:+.{decimals}f}"


def fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return DASH
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def md_section(title: str, *blocks: str) -> str:
    """A ``## title`` heading and the blocks below it, as paragraphs."""
    return "\n\n".join([f"## {title}", *blocks])
