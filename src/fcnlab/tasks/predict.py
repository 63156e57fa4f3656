"""``predict(cfg)``: segment images of any size with a trained checkpoint (``predict.py``).

``python predict.py ckpt_path=<run>/checkpoints/last.ckpt input=<image or folder> output=<folder>
[crf.enabled=true] [device=cpu]`` writes, for every readable image ``<stem>.<ext>``:

* ``<output>/<stem>.png``: the labels as a palette-indexed PNG (mode ``P``, pixel value = class
  index), the same size as the image;
* ``<output>/<stem>_overlay.png``: the class colours blended over the image (``overlay_alpha``);

and once ``<output>/classes.json`` (index, name, colour of every class) and
``<output>/report.json`` (the files written and the files that failed, with the reason).

The colours are the ``palette`` of the checkpoint's data set (``classes.yaml`` of its folder)
when that file is still there, else the PASCAL VOC colour map.

Images are read as 8-bit RGB: grayscale, grayscale + alpha, palette and RGBA images are
converted (alpha is dropped), 16-bit images are scaled by 1/257, then preprocessed as the
checkpoint was trained (``caffe`` / ``torchvision``).

The images go through Lightning's ``Trainer.predict`` and the module's ``predict_step`` (eval
mode, ``torch.inference_mode``, Lightning's progress bar on a terminal, plain lines from
:mod:`fcnlab.progress` in a log file) on ``device`` (``cpu`` by default, ``cuda``, ``cuda:<n>``,
``mps``: one device), ``batch_size`` images at a time. A batch holds images of one size only:
the files are grouped by the size in their header, in input order. Padding images of different
sizes to a common one would change the labels near the padded edges (the FCNs see hundreds of
pixels around each one, and zero padding is the mean colour, not "nothing"), so a picture's
labels would depend on its neighbours in the folder; grouped, they are the same at any
``batch_size`` (tests/tasks/test_predict.py). A network with a minimum input size (DeconvNet:
193×193) gets a smaller image padded at the bottom and right with zeros of the preprocessed
input (= the mean colour), and its labels cropped back (:func:`fcnlab.module.predict_labels`);
the FCNs, SegNet and DeepLab take any size as it is. Files are written as each batch ends (a
Lightning ``BasePredictionWriter``), so memory does not grow with the folder.

Nothing is logged to wandb (or any logger): the outputs are the files above, so there is no
wandb run to open or to close.

An unreadable file is named in the printed summary and in ``report.json`` and skipped; the
others are still segmented. The exit status is 0 when at least one image was written, 1 (one
line) when none was.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import BasePredictionWriter
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fcnlab.config import instantiate
from fcnlab.data.synthetic import voc_palette
from fcnlab.data.transforms import preprocess
from fcnlab.errors import ConfigError, DataError, FcnlabError
from fcnlab.module import SegmentationModule, min_input_size, predict_labels
from fcnlab.progress import Progress, is_interactive
from fcnlab.tasks.trainer import crf_params

__all__ = ["NothingWrittenError", "min_input_size", "predict", "segment", "to_rgb8"]

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm")
REPORT_FILE = "report.json"
CLASSES_FILE = "classes.json"


class NothingWrittenError(FcnlabError):
    """No image could be segmented."""


# --------------------------------------------------------------------------- inputs
def list_inputs(path: str | Path) -> list[Path]:
    """``path`` itself if it is a file, else the image files directly in the folder, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"input: folder {str(path)!r} holds no image files "
                              f"({' '.join(IMAGE_SUFFIXES)})")
        return files
    raise ConfigError(f"input: {str(path)!r} does not exist; expected an image file or a folder")


def to_rgb8(im: Image.Image) -> np.ndarray:
    """H × W × 3 uint8 RGB of any PIL image: 16-bit scaled by 1/257, alpha dropped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        gray = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0  # [0, 1] floats or 0-255
        gray = np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, P, PA, RGBA, CMYK, YCbCr, 1 ...
    return np.asarray(im, dtype=np.uint8)


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as H × W × 3 uint8 RGB, or DataError naming the file and why."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here
            rgb = to_rgb8(im)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad files
        raise DataError(f"cannot read image {path}: {e}") from e
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise DataError(f"cannot read image {path}: unexpected shape {rgb.shape}")
    return rgb


# --------------------------------------------------------------------------- colours
def class_palette(module) -> list[list[int]]:
    """One ``[r, g, b]`` per class: the data's ``classes.yaml`` palette if readable, else VOC."""
    k = module.num_classes
    palette = _data_palette(module.hparams.get("data"))
    if palette is None or len(palette) < k:
        flat = voc_palette(256)
        return [flat[3 * c:3 * c + 3] for c in range(k)]
    return [list(map(int, c)) for c in palette[:k]]


def _data_palette(data: dict | None) -> list | None:
    if not data or not data.get("datamodule"):
        return None
    try:
        dm = instantiate(data["datamodule"])  # cheap: builds paths, reads no image
        root = getattr(dm, "root", None)
        if root is None:
            return None
        info = yaml.safe_load((Path(root) / "classes.yaml").read_text())
        palette = info.get("palette") if isinstance(info, dict) else None
        if (isinstance(palette, list) and palette
                and all(isinstance(c, (list, tuple)) and len(c) == 3 for c in palette)):
            return palette
    except Exception as e:  # a moved data set, an unknown target...: fall back to VOC colours
        log.debug("no data palette: %s", e)
    return None


def label_image(labels: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """H × W class indices -> a mode ``P`` PNG image whose pixel values are the indices."""
    im = Image.fromarray(labels.astype(np.uint8))  # "L"; putpalette makes it "P", values kept
    flat = [v for c in palette for v in c]
    rest = voc_palette(256)[len(flat):]
    im.putpalette(flat + rest)
    return im


def overlay_image(rgb: np.ndarray, labels: np.ndarray, palette: list[list[int]],
                  alpha: float = 0.5) -> Image.Image:
    colours = np.asarray(palette, dtype=np.float32)[labels]
    blend = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    return Image.fromarray(np.clip(np.rint(blend), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- inference
@torch.inference_mode()
def segment(module, rgb: np.ndarray, *, device: torch.device | str = "cpu") -> np.ndarray:
    """H × W int64 labels of one H × W × 3 uint8 RGB image, without a Trainer (what
    ``predict_step`` does for a batch: :func:`fcnlab.module.predict_labels`)."""
    x = preprocess(rgb, module.preprocess)[None].to(device)
    return predict_labels(module, x)[0].cpu().numpy().astype(np.int64)


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header (nothing decoded), or None if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 (reported with its reason when the image is read)
        return None


def plan_batches(files: list[Path], batch_size: int) -> tuple[list[list[int]], list[str | None]]:
    """Group the files into batches of one image size, and name each file's outputs.

    Returns ``(batches, stems)``: lists of indices into ``files``, at most ``batch_size`` each,
    ordered by their first file; a file whose header cannot be read is a batch alone (its error
    is reported when it is read). ``stems[i]`` is the output name of file ``i``: its stem, or
    ``<stem>_<ext>`` for the second of ``a.png`` and ``a.jpg`` in one folder (None for a file that
    cannot be opened, which writes nothing).
    """
    batches: list[list[int]] = []
    open_batch: dict[tuple[int, int], list[int]] = {}
    stems: list[str | None] = []
    seen: set[str] = set()
    for i, path in enumerate(files):
        size = _header_size(path)
        if size is None:
            batches.append([i])
            stems.append(None)
            continue
        stem = path.stem
        if stem in seen:  # a.png and a.jpg in one folder: keep both
            stem = f"{stem}_{path.suffix.lstrip('.').lower()}"
        seen.add(stem)
        stems.append(stem)
        batch = open_batch.get(size)
        if batch is None or len(batch) == batch_size:
            batch = open_batch[size] = []
            batches.append(batch)
        batch.append(i)
    return batches, stems


class ImageBatches(Dataset):
    """One item per planned batch: ``{"index", "rgb", "error", "image"}``.

    ``index``, ``rgb`` (H × W × 3 uint8, None if unreadable) and ``error`` (None, or why the file
    could not be read) have one entry per file of the batch; ``image`` is the N × 3 × H × W
    preprocessed stack of the readable ones (None if none is). Read in the DataLoader's workers.
    """

    def __init__(self, files: list[Path], batches: list[list[int]], preprocess_name: str):
        self.files, self.batches, self.preprocess = files, batches, preprocess_name

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> dict:
        item = {"index": list(self.batches[b]), "rgb": [], "error": []}
        images = []
        for i in self.batches[b]:
            try:
                rgb = read_rgb(self.files[i])
            except DataError as e:
                item["rgb"].append(None)
                item["error"].append(str(e))
                continue
            item["rgb"].append(rgb)
            item["error"].append(None)
            images.append(preprocess(rgb, self.preprocess))
        item["image"] = torch.stack(images) if images else None
        return item


def _as_is(item: dict) -> dict:
    """The DataLoader's collate: items are whole batches already (and numpy stays numpy)."""
    return item


class ImageWriter(BasePredictionWriter):
    """Writes each batch's label PNGs and overlays as ``predict_step`` returns them."""

    def __init__(self, files: list[Path], stems: list[str | None], out: Path,
                 palette: list[list[int]], alpha: float):
        super().__init__(write_interval="batch")
        self.files, self.stems, self.out = files, stems, out
        self.palette, self.alpha = palette, alpha
        self.written: dict[int, dict] = {}
        self.failed: dict[int, dict] = {}
        # Lightning draws the bar on a terminal; off one, plain lines (fcnlab.progress).
        self.progress = Progress("predict", len(files), unit="images", bar=False)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch,
                           batch_idx, dataloader_idx=0) -> None:
        labels = prediction.cpu().numpy().astype(np.int64)
        j = 0
        for i, rgb, error in zip(batch["index"], batch["rgb"], batch["error"]):
            path = self.files[i]
            if error is not None:
                self.failed[i] = {"input": str(path), "error": error}
                log.warning("skipped %s: %s", path, error)
            else:
                stem = self.stems[i]
                label_path = self.out / f"{stem}.png"
                overlay_path = self.out / f"{stem}_overlay.png"
                label_image(labels[j], self.palette).save(label_path)
                overlay_image(rgb, labels[j], self.palette, self.alpha).save(overlay_path)
                self.written[i] = {"input": str(path), "labels": str(label_path),
                                   "overlay": str(overlay_path), "size": list(rgb.shape[:2])}
                j += 1
            self.progress.update()


# --------------------------------------------------------------------------- the task
def _device(name) -> tuple[torch.device, str, int | list[int]]:
    """``(device, accelerator, devices)``: the ``device`` key as Lightning Trainer arguments."""
    try:
        device = torch.device(str(name))
    except RuntimeError as e:
        raise ConfigError(f"device: expected cpu, cuda, cuda:<n> or mps, got {name!r}") from e
    if device.type == "cpu":
        return device, "cpu", 1
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available; "
                              f"use device=cpu")
        return device, "gpu", [device.index or 0]
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device: {name!r} requested but MPS is not available; "
                              f"use device=cpu")
        return device, "mps", 1
    raise ConfigError(f"device: expected cpu, cuda, cuda:<n> or mps, got {name!r}")


def _count(cfg: DictConfig, key: str, default: int, least: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{key}: expected an int >= {least}, got {value!r}")
    return value


def predict(cfg: DictConfig) -> dict:
    """Segment ``cfg.input`` (a file or a folder) into ``cfg.output``; returns the report."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: expected the path of a checkpoint")
    if not cfg.get("input"):
        raise ConfigError("input: expected an image file or a folder of images")
    alpha = cfg.get("overlay_alpha", 0.5)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError(f"overlay_alpha: expected a number in [0, 1], got {alpha!r}")
    batch_size = _count(cfg, "batch_size", 1, 1)
    num_workers = _count(cfg, "num_workers", 0, 0)
    files = list_inputs(cfg.input)
    device, accelerator, devices = _device(cfg.get("device", "cpu"))
    module, ckpt = SegmentationModule.from_checkpoint(cfg.ckpt_path)
    if cfg.get("crf") is not None and cfg.crf.get("enabled"):
        module.set_crf(crf_params(cfg))
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    palette = class_palette(module)
    classes = [{"index": i, "name": n, "color": palette[i]}
               for i, n in enumerate(module.class_names)]
    (out / CLASSES_FILE).write_text(json.dumps({"classes": classes}, indent=2) + "\n")

    batches, stems = plan_batches(files, batch_size)
    loader = DataLoader(ImageBatches(files, batches, module.preprocess), batch_size=None,
                        shuffle=False, num_workers=num_workers, collate_fn=_as_is)
    writer = ImageWriter(files, stems, out, palette, float(alpha))
    trainer = L.Trainer(accelerator=accelerator, devices=devices, logger=False,
                        callbacks=[writer], enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=is_interactive(),
                        default_root_dir=str(out))
    try:
        with warnings.catch_warnings():
            # Each item of the loader is a whole batch (batch_size=None), which carries its own
            # file indices; Lightning's batch indices, which it cannot infer then, are not used.
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            trainer.predict(module, dataloaders=loader, return_predictions=False)
    finally:
        writer.progress.close()

    report = {
        "task": "predict",
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "model": module.hparams.get("name", ""),
        "iteration": int(ckpt.get("global_step", 0)),
        "input": str(cfg.input),
        "output": str(out),
        "device": str(device),
        "crf": module.crf is not None,
        "written": [writer.written[i] for i in sorted(writer.written)],
        "failed": [writer.failed[i] for i in sorted(writer.failed)],
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    _print_summary(report)
    if not report["written"]:
        raise NothingWrittenError(f"no image could be segmented ({len(report['failed'])} failed; "
                                  f"see {out / REPORT_FILE})")
    return report


def _print_summary(report: dict) -> None:
    n_ok, n_bad = len(report["written"]), len(report["failed"])
    print(f"\n{report['model']}: segmented {n_ok} image{'s' if n_ok != 1 else ''} into "
          f"{report['output']}" + (f", {n_bad} failed:" if n_bad else ""))
    for f in report["failed"]:
        print(f"  failed: {os.path.basename(f['input'])}: {f['error']}")
    print(f"report:  {Path(report['output']) / REPORT_FILE}")
