"""The prediction grid: the first validation images, their ground truth and each run's
prediction from its last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fcnlab.report.plots import pyplot
from fcnlab.report.runs import Run, _get, final_evaluation


def _checkpoint(run: Run) -> Path | None:
    last = _get(run.record, "checkpoints.last")
    candidates = []
    if last:
        candidates += [Path(last), run.folder / "checkpoints" / Path(last).name]
    candidates.append(run.folder / "checkpoints" / "last.ckpt")
    return next((p for p in candidates if p.is_file()), None)


def _palette(root: Path | None):
    import numpy as np

    from fcnlab.data.synthetic import voc_palette

    pal = np.array(voc_palette(256), dtype=np.uint8).reshape(256, 3)
    try:
        info = yaml.safe_load((root / "classes.yaml").read_text()) if root else None
        for i, rgb in enumerate((info or {}).get("palette") or []):
            pal[i] = rgb
    except (OSError, yaml.YAMLError, ValueError, TypeError):
        pass
    return pal


def write_predictions(runs: list[Run], out_png: Path, num_images: int = 4) -> list[str]:
    """Image, ground truth and each run's prediction for the first ``num_images`` val images.

    Returns the notes (runs skipped and why). Predictions are plain argmax on CPU (no CRF).
    """
    plt = pyplot()
    import torch

    from fcnlab.config import instantiate
    from fcnlab.data.transforms import denormalize
    from fcnlab.module import SegmentationModule

    notes, columns = [], []  # columns: (title, [H x W x 3 uint8] per image)
    reference = None  # (ids, images, masks, palette)
    datamodules: dict[str, object] = {}
    for run in runs:
        if run.record is None or run.model is None:
            continue
        ckpt = _checkpoint(run)
        if ckpt is None:
            notes.append(f"{run.name}: no checkpoint (checkpoints.last missing); not shown")
            continue
        try:
            module, _ = SegmentationModule.from_checkpoint(ckpt)
            data_cfg = module.hparams.data or {}
            dm_cfg = data_cfg.get("datamodule")
            key = json.dumps(dm_cfg, sort_keys=True)
            if key not in datamodules:
                datamodules[key] = instantiate(dm_cfg)
            dm = datamodules[key]
            batch = {"image": [], "mask": [], "id": []}
            for b in dm.val_dataloader():
                for k in batch:
                    batch[k] += list(b[k])
                if len(batch["id"]) >= num_images:
                    break
            ids = batch["id"][:num_images]
            images = torch.stack(batch["image"][:num_images])
            masks = torch.stack(batch["mask"][:num_images])
            module.eval()
            with torch.no_grad():
                pred = module(images).argmax(1)
            if pred.shape != masks.shape:
                notes.append(f"{run.name}: prediction {tuple(pred.shape)} does not match the "
                             f"labels {tuple(masks.shape)}; not shown")
                continue
            palette = _palette(getattr(dm, "root", None))
            if reference is None:
                mode = dm_cfg.get("preprocess", "caffe")
                reference = (ids, [denormalize(x, mode) for x in images],
                             [palette[m.numpy().astype("int64") % 256] for m in masks], palette)
            elif ids != reference[0]:
                notes.append(f"{run.name}: its val images ({ids}) differ from the first run's; "
                             "not shown")
                continue
            ev = final_evaluation(run, "val")
            miou = (f" mIoU {100 * ev['mean_iou']:.1f}"
                    if ev and ev.get("mean_iou") is not None else "")
            columns.append((f"{run.model}{miou}\n{run.name}"[:60],
                            [palette[p.numpy() % 256] for p in pred]))
        except Exception as e:  # one broken checkpoint must not sink the report
            notes.append(f"{run.name}: cannot predict ({type(e).__name__}: {e}); not shown")
    if reference is None:
        return notes + ["no run could predict: predictions.png not written"]
    ids, images, gts, _ = reference
    titles = ["image", "ground truth"] + [c[0] for c in columns]
    n_rows, n_cols = len(ids), len(titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.0 * n_rows + 0.6),
                             squeeze=False)
    for i in range(n_rows):
        pics = [images[i], gts[i]] + [c[1][i] for c in columns]
        for j, pic in enumerate(pics):
            ax = axes[i][j]
            ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(str(ids[i]), fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return notes

