"""Metric-vs-iteration plots, one PNG per metric with a line per run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fcnlab.report.paper_tables import METRIC_LABELS
from fcnlab.report.formatting import METRICS
from fcnlab.report.runs import Run, evaluations

PLOT_METRICS = METRICS


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported only when drawing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_label(run: Run, many: set[str]) -> str:
    return f"{run.model} ({run.name})" if run.model in many else str(run.model)


def write_plots(runs: list[Run], split: str, out: Path) -> list[Path]:
    """One PNG per metric: the metric against iteration, a line per run (CRF evaluations as
    separate dashed lines); budgets as vertical dotted lines."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    many = {m for m, c in Counter(str(r.model) for r in runs).items() if c > 1}
    budgets = sorted({b for r in runs for b in (r.budgets() or [])})
    paths = []
    for metric in PLOT_METRICS:
        series = []
        for r in runs:
            for crf in (False, True):
                pts = [(e["iteration"], 100 * e[metric]) for e in evaluations(r, split, crf)
                       if e.get(metric) is not None]
                if pts:
                    series.append((_plot_label(r, many) + (" + CRF" if crf else ""), crf, pts))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, crf, pts in series:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "x--" if crf else "o-", label=label, markersize=4)
        for b in budgets:
            ax.axvline(b, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{METRIC_LABELS[metric]} (%)")
        ax.set_title(f"{METRIC_LABELS[metric]} on {split}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{metric}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths

