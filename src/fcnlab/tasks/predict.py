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
converted (alpha is dropped), 16-bit images are scaled by 1/257. Each image goes through the
network alone (batch 1), in eval mode, under ``torch.inference_mode``, on ``device`` (CPU by
default), preprocessed as the checkpoint was trained (``caffe`` / ``torchvision``). A network with
a minimum input size (DeconvNet: 193×193) gets a smaller image padded at the bottom and right
with zeros of the preprocessed input (= the mean colour), and its labels cropped back; the FCNs,
SegNet and DeepLab take any size as it is.

An unreadable file is named in the printed summary and in ``report.json`` and skipped; the
others are still segmented. The exit status is 0 when at least one image was written, 1 (one
line) when none was.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from omegaconf import DictConfig
from PIL import Image

from fcnlab.config import instantiate
from fcnlab.crf import crf_predict
from fcnlab.data.synthetic import voc_palette
from fcnlab.data.transforms import preprocess
from fcnlab.errors import ConfigError, DataError, FcnlabError
from fcnlab.module import SegmentationModule
from fcnlab.tasks.trainer import crf_params

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
def min_input_size(net) -> int:
    """The smallest H/W the network takes (DeconvNet's ``min_input_size``; 1 for the others)."""
    return int(getattr(net, "min_input_size", 1) or 1)


@torch.inference_mode()
def segment(module, rgb: np.ndarray, *, device: torch.device | str = "cpu") -> np.ndarray:
    """H × W int64 labels of one H × W × 3 uint8 RGB image (padded to the net's minimum size)."""
    h, w = rgb.shape[:2]
    x = preprocess(rgb, module.preprocess)[None].to(device)
    lo = min_input_size(module.net)
    pad_h, pad_w = max(0, lo - h), max(0, lo - w)
    if pad_h or pad_w:  # zeros of the preprocessed input: the mean colour in both conventions
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
    logits = module(x)[..., :h, :w]
    if logits.shape[-2:] != (h, w):  # e.g. DeepLab's stride-8 logits: upsample to the image
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    if module.crf is not None:
        labels = crf_predict(logits, x[..., :h, :w], preprocess=module.preprocess,
                             config=module.crf)
    else:
        labels = logits.argmax(1)
    return labels[0].cpu().numpy().astype(np.int64)


# --------------------------------------------------------------------------- the task
def _device(name) -> torch.device:
    try:
        device = torch.device(str(name))
    except RuntimeError as e:
        raise ConfigError(f"device: expected cpu, cuda or cuda:<n>, got {name!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available; use device=cpu")
    return device


def predict(cfg: DictConfig) -> dict:
    """Segment ``cfg.input`` (a file or a folder) into ``cfg.output``; returns the report."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: expected the path of a checkpoint")
    if not cfg.get("input"):
        raise ConfigError("input: expected an image file or a folder of images")
    alpha = cfg.get("overlay_alpha", 0.5)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError(f"overlay_alpha: expected a number in [0, 1], got {alpha!r}")
    files = list_inputs(cfg.input)
    device = _device(cfg.get("device", "cpu"))
    module, ckpt = SegmentationModule.from_checkpoint(cfg.ckpt_path)
    if cfg.get("crf") is not None and cfg.crf.get("enabled"):
        module.set_crf(crf_params(cfg))
    module.eval().to(device)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    palette = class_palette(module)
    classes = [{"index": i, "name": n, "color": palette[i]}
               for i, n in enumerate(module.class_names)]
    (out / CLASSES_FILE).write_text(json.dumps({"classes": classes}, indent=2) + "\n")

    written, failed = [], []
    stems: dict[str, int] = {}
    for path in files:
        try:
            rgb = read_rgb(path)
            labels = segment(module, rgb, device=device)
        except FcnlabError as e:
            failed.append({"input": str(path), "error": str(e)})
            log.warning("skipped %s: %s", path, e)
            continue
        stem = path.stem
        if stem in stems:  # a.png and a.jpg in one folder: keep both
            stems[stem] += 1
            stem = f"{stem}_{path.suffix.lstrip('.').lower()}"
        stems.setdefault(stem, 0)
        label_path, overlay_path = out / f"{stem}.png", out / f"{stem}_overlay.png"
        label_image(labels, palette).save(label_path)
        overlay_image(rgb, labels, palette, float(alpha)).save(overlay_path)
        written.append({"input": str(path), "labels": str(label_path),
                        "overlay": str(overlay_path), "size": list(rgb.shape[:2])})

    report = {
        "task": "predict",
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "model": module.hparams.get("name", ""),
        "iteration": int(ckpt.get("global_step", 0)),
        "input": str(cfg.input),
        "output": str(out),
        "device": str(device),
        "crf": module.crf is not None,
        "written": written,
        "failed": failed,
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    _print_summary(report)
    if not written:
        raise NothingWrittenError(f"no image could be segmented ({len(failed)} failed; "
                                  f"see {out / REPORT_FILE})")
    return report


def _print_summary(report: dict) -> None:
    n_ok, n_bad = len(report["written"]), len(report["failed"])
    print(f"\n{report['model']}: segmented {n_ok} image{'s' if n_ok != 1 else ''} into "
          f"{report['output']}" + (f", {n_bad} failed:" if n_bad else ""))
    for f in report["failed"]:
        print(f"  failed: {os.path.basename(f['input'])}: {f['error']}")
    print(f"report:  {Path(report['output']) / REPORT_FILE}")
