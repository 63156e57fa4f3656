"""Each run's prediction on a few fixed validation images, written beside ``results.json``.

The report's picture grid (:mod:`fcnlab.report.predictions`) is drawn from these files, so the
report reads records only and never rebuilds a network. At the end of every validation (never
during the sanity check) global rank 0 runs the network, in eval mode and without gradients, on
the first ``num_images`` items of the validation *dataset* (taken by index, so the choice does not
depend on how many processes shard the loader) and writes into ``<run>/predictions/``:

- ``<k>_image.png``: the input, turned back into 8-bit RGB (written once per run);
- ``<k>_truth.png``: the ground truth, a palette PNG whose pixel value is the class index, void
  kept as its own value 255 (written once per run);
- ``<k>_prediction.png``: the argmax of the network's logits, same format, no CRF;
- ``index.json``: iteration, model, class names, palette and, per image, its id and file names.

Every file is replaced atomically (temporary file + rename) and ``index.json`` last, so the files
always show the newest evaluated weights: the final ones once the run has finished. An image whose
logits are not the size of its label (a network that predicts on a coarser grid) gets
``"prediction": null`` and a logged warning; training goes on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from PIL import Image

from fcnlab.callbacks.records import write_json_atomic
from fcnlab.data.synthetic import voc_palette
from fcnlab.data.transforms import denormalize
from fcnlab.errors import ConfigError

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"  # read by fcnlab.report.predictions (same name there)
INDEX_FILE = "index.json"
VOID = 255  # the value void pixels keep in the ground-truth PNGs (the VOC convention)


def class_palette(datamodule) -> list[list[int]]:
    """256 ``[r, g, b]`` colours: the data set's ``classes.yaml`` palette (a folder data set's
    ``root``) over the PASCAL VOC colour map, whose entry 255 is the void colour."""
    flat = voc_palette(256)
    palette = [flat[3 * i:3 * i + 3] for i in range(256)]
    root = getattr(datamodule, "root", None)
    if root is None:
        return palette
    try:
        info = yaml.safe_load((Path(root) / "classes.yaml").read_text())
        colours = info.get("palette") if isinstance(info, dict) else None
        for i, rgb in enumerate((colours or [])[:VOID]):
            if len(rgb) == 3:  # a malformed entry keeps its VOC colour
                palette[i] = [int(v) for v in rgb]
    except (OSError, yaml.YAMLError, TypeError, ValueError) as e:
        log.debug("prediction images: no palette in %s/classes.yaml (%s); VOC colours", root, e)
    return palette


def label_png(labels: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """H × W class indices (0-255) -> a mode ``P`` image whose pixel values are the indices."""
    im = Image.fromarray(labels.astype(np.uint8))
    im.putpalette([v for rgb in palette for v in rgb])
    return im


def save_png_atomic(im: Image.Image, path: Path) -> None:
    """Write to a temporary file and rename, so a reader never sees half an image."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    im.save(tmp, format="PNG")
    os.replace(tmp, path)


class PredictionImages(L.Callback):
    """Write the prediction on the first ``num_images`` validation images at every evaluation.

    Args:
        num_images: how many validation images (the first ones of the split, by index).
        dirpath: where to write; default ``<trainer.default_root_dir>/predictions``, the folder
            the report reads.
    """

    def __init__(self, num_images: int = 4, dirpath: str | Path | None = None):
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ConfigError(f"callbacks.prediction_images.num_images: expected an integer "
                              f">= 1, got {num_images!r}")
        self.num_images = num_images
        self.dirpath = Path(dirpath) if dirpath else None
        self._items: list[dict] | None = None
        self._inputs_written = False
        self._disabled = False
        self._warned: set[str] = set()

    # ---------------------------------------------------------------------- what to draw
    def _fixed_items(self, trainer: L.Trainer) -> list[dict] | None:
        """The first items of the val dataset (cached), or None when there is nothing to draw."""
        if self._items is None:
            datamodule = getattr(trainer, "datamodule", None)
            if datamodule is None:  # e.g. the classifier pretraining, fed plain dataloaders
                return self._disable("the trainer has no datamodule")
            dataset = datamodule.val_dataloader().dataset
            items = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
            if not items or not all(isinstance(it, dict) and {"image", "mask", "id"} <= set(it)
                                    and it["mask"].ndim == 2 for it in items):
                return self._disable("the val items are not {image, mask (H x W), id}")
            self._items = items
        return self._items

    def _disable(self, why: str) -> None:
        log.info("prediction images: %s; none written", why)
        self._disabled = True
        return None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    # ---------------------------------------------------------------------- the hook
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0 or self._disabled:
            return
        items = self._fixed_items(trainer)
        if not items:
            return
        out = self.dirpath or Path(trainer.default_root_dir) / PREDICTIONS_DIR
        out.mkdir(parents=True, exist_ok=True)
        datamodule = trainer.datamodule
        palette = class_palette(datamodule)
        ignore = int(getattr(pl_module, "ignore_index", VOID))
        preprocess = getattr(datamodule, "preprocess", None) or getattr(pl_module, "preprocess",
                                                                        "caffe")
        entries = []
        was_training = pl_module.training
        pl_module.eval()
        try:
            for k, item in enumerate(items):
                names = {kind: f"{k:02d}_{kind}.png" for kind in ("image", "truth", "prediction")}
                mask = item["mask"].cpu().numpy()
                if not self._inputs_written:
                    truth = np.where(mask == ignore, VOID, mask)
                    save_png_atomic(Image.fromarray(denormalize(item["image"], preprocess)),
                                    out / names["image"])
                    save_png_atomic(label_png(truth, palette), out / names["truth"])
                with torch.no_grad():
                    logits = pl_module(item["image"][None].to(pl_module.device))
                if tuple(logits.shape[-2:]) != mask.shape:
                    self._warn_once(str(item["id"]), (
                        f"prediction images: {item['id']}: the network's output is "
                        f"{tuple(logits.shape[-2:])}, the label {mask.shape}; its prediction is "
                        "not written"))
                    (out / names["prediction"]).unlink(missing_ok=True)
                    names["prediction"] = None
                else:
                    pred = logits[0].argmax(0).cpu().numpy()
                    save_png_atomic(label_png(pred, palette), out / names["prediction"])
                entries.append({"id": str(item["id"]), "size": list(mask.shape), **names})
        finally:
            pl_module.train(was_training)
        self._inputs_written = True
        class_names = list(getattr(pl_module, "class_names", []))
        hparams = getattr(pl_module, "hparams", {}) or {}
        write_json_atomic(out / INDEX_FILE, {
            "split": "val",
            "iteration": trainer.global_step,
            "model": hparams.get("name"),
            "prediction": "argmax of the logits, eval mode, no CRF",
            "classes": class_names,
            "palette": palette[:len(class_names)],
            "void": {"value": VOID, "color": palette[VOID]},
            "images": entries,
        })
