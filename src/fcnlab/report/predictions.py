"""The prediction grid: validation images, their ground truth and each run's prediction.

Drawn from the files every training run writes into ``<run>/predictions/`` at each evaluation
(:mod:`fcnlab.callbacks.prediction_images`: ``index.json``, and per image ``<k>_image.png``,
``<k>_truth.png``, ``<k>_prediction.png``, the labels as class-index palette PNGs). Nothing here
builds a network, a Lightning module or a data module, or imports torch: the report reads records.
"""

from __future__ import annotations

import json
from pathlib import Path

from fcnlab.report.plots import pyplot
from fcnlab.report.runs import Run, final_evaluation

PREDICTIONS_DIR = "predictions"  # fcnlab.callbacks.prediction_images.PREDICTIONS_DIR (not
INDEX_FILE = "index.json"        # imported: it pulls in torch and Lightning)


def read_index(run: Run) -> tuple[dict | None, str | None]:
    """The run's ``predictions/index.json``, or None and why it cannot be used."""
    path = run.folder / PREDICTIONS_DIR / INDEX_FILE
    if not path.is_file():
        return None, "no prediction images; not shown"
    try:
        index = json.loads(path.read_text())
        images = index["images"]
        if not isinstance(images, list) or not all(isinstance(e, dict) and "id" in e
                                                   for e in images):
            raise ValueError("'images' is not a list of {id, ...}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{path} unreadable ({e}); not shown"
    return index, None


def _rgb(path: Path):
    """H × W × 3 uint8 of a PNG; a palette PNG through its own palette (the class colours)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _title(run: Run) -> str:
    ev = final_evaluation(run, "val")
    miou = f" mIoU {100 * ev['mean_iou']:.1f}" if ev and ev.get("mean_iou") is not None else ""
    return f"{run.model}{miou}\n{run.name}"[:60]


def write_predictions(runs: list[Run], out_png: Path, num_images: int = 4) -> list[str]:
    """Tile image | ground truth | each run's prediction for the first ``num_images`` images
    the runs wrote; return the notes (runs left out and why)."""
    notes: list[str] = []
    reference = None  # (run, index, ids): the first run with images gives image and truth
    columns = []  # (title, [path or None per image])
    for run in runs:
        if run.record is None or run.model is None:
            continue
        index, why = read_index(run)
        if index is None:
            notes.append(f"{run.name}: {why}")
            continue
        entries = index["images"][:num_images]
        ids = [str(e["id"]) for e in entries]
        if reference is None:
            if not entries:
                notes.append(f"{run.name}: its index.json lists no images; not shown")
                continue
            reference = (run, entries, ids)
        elif ids != reference[2]:
            notes.append(f"{run.name}: its val images ({', '.join(ids)}) differ from "
                         f"{reference[0].name}'s ({', '.join(reference[2])}); not shown")
            continue
        folder = run.folder / PREDICTIONS_DIR
        cells = []
        for e in entries:
            path = folder / e["prediction"] if e.get("prediction") else None
            if path is None or not path.is_file():
                notes.append(f"{run.name}: no prediction for {e['id']} "
                             + ("(its output is not the label's size)" if path is None
                                else f"({path.name} missing)"))
                path = None
            cells.append(path)
        ev = final_evaluation(run, "val")
        if ev and index.get("iteration") != ev.get("iteration"):
            notes.append(f"{run.name}: the images show iteration {index.get('iteration')}, its "
                         f"last val evaluation is at {ev.get('iteration')}")
        columns.append((_title(run), cells))
    if reference is None:
        return notes + ["no run wrote prediction images: predictions.png not written"]
    ref_run, entries, ids = reference
    folder = ref_run.folder / PREDICTIONS_DIR
    try:
        images = [_rgb(folder / e["image"]) for e in entries]
        truths = [_rgb(folder / e["truth"]) for e in entries]
        preds = [[_rgb(p) if p else None for p in cells] for _, cells in columns]
    except (OSError, KeyError, TypeError, ValueError) as e:
        return notes + [f"{ref_run.name}: prediction images unreadable ({e}): predictions.png "
                        "not written"]
    _draw(out_png, ids, images, truths, [t for t, _ in columns], preds)
    return notes


def _draw(out_png: Path, ids: list[str], images: list, truths: list, titles: list[str],
          preds: list[list]) -> None:
    plt = pyplot()
    n_rows, n_cols = len(ids), 2 + len(titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.0 * n_rows + 0.6),
                             squeeze=False)
    for i in range(n_rows):
        pics = [images[i], truths[i]] + [column[i] for column in preds]
        for j, (title, pic) in enumerate(zip(["image", "ground truth"] + titles, pics)):
            ax = axes[i][j]
            if pic is None:
                ax.text(0.5, 0.5, "no prediction", ha="center", va="center", fontsize=7)
            else:
                ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7)
            if j == 0:
                ax.set_ylabel(ids[i], fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
