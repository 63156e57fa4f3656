"""Read images and labels, refusing bad data; the datasets every DataModule builds.

The fcnlab folder layout (written by :mod:`fcnlab.data.synthetic`, and what a user's own data must
look like)::

    <root>/images/<id>.png (or .jpg/.jpeg)   RGB image
    <root>/masks/<id>.png                    "P" or "L" PNG: pixel value = class index, 255 = void
    <root>/splits/<split>.txt                one id per line

Other layouts (VOC, SBD, CamVid: :mod:`fcnlab.data.voc`, :mod:`fcnlab.data.camvid`) only differ in
how the list of :class:`Sample` is built; reading and checking is shared here.

Every problem raises :class:`~fcnlab.errors.DataError` naming the file: labels are never clipped,
quantised or read as RGB (reading a VOC label as RGB is a classic silent bug, docs/reference.md §6).
The only value mapping is the explicit ``void_values`` (CamVid's 11 "Unlabelled" -> 255).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from fcnlab.data.transforms import check_mode, preprocess
from fcnlab.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAT_HINT = ("expected an SBD .mat file holding a struct GTcls whose field Segmentation is the "
            "H x W array of class indices")


# --------------------------------------------------------------------------- readers
def read_split(root: Path, split: str) -> list[str]:
    """Ids listed in ``root/splits/<split>.txt`` (blank lines skipped); DataError if none."""
    path = Path(root) / "splits" / f"{split}.txt"
    try:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"cannot read split file {path}: {e.strerror or e}; expected one id per "
                        "line") from e
    if not ids:
        raise DataError(f"split file {path} is empty; expected one id per line")
    return ids


def read_list_file(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """``(line number, whitespace-separated tokens)`` of every non-blank line of a list file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"cannot read list file {path} ({what}): {e.strerror or e}") from e
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise DataError(f"list file {path} ({what}) is empty: the split has no images")
    return rows


def read_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB array; grayscale, palette and RGBA images are converted to RGB."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here and not later
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im)
    except Exception as e:  # PIL raises OSError, SyntaxError, zlib.error... on bad files
        raise DataError(f"cannot read image {path}: {e}") from e


def check_label_values(mask: np.ndarray, path: Path, num_classes: int, ignore_index: int = 255,
                       void_values: Sequence[int] = ()) -> np.ndarray:
    """``mask`` with ``void_values`` set to ``ignore_index``; DataError on any other value that is
    neither a class index nor void (the values are named, never clipped)."""
    if void_values:
        mask = np.where(np.isin(mask, list(void_values)), ignore_index, mask).astype(mask.dtype)
    values, counts = np.unique(mask, return_counts=True)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        mapped = (f"; {', '.join(map(str, void_values))} are mapped to void" if void_values
                  else "")
        raise DataError(f"mask {path} has label values {shown} outside the valid range "
                        f"[0, {num_classes - 1}] (or {ignore_index} = void{mapped})")
    return mask.astype(np.uint8)


def read_mask(path: Path, num_classes: int, ignore_index: int = 255,
              void_values: Sequence[int] = ()) -> np.ndarray:
    """H x W uint8 array of class indices, checked to lie in [0, num_classes-1] or ignore_index.

    ``void_values`` (e.g. CamVid's 11) are mapped to ``ignore_index`` first; nothing else is mapped.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            mask = np.asarray(im) if mode in ("P", "L") else None
    except Exception as e:  # PIL raises OSError, SyntaxError, zlib.error... on bad files
        raise DataError(f"cannot read mask {path}: {e}") from e
    if mask is None:
        hint = (" Convert it by mapping each palette colour to its index (exact colour match); "
                "do not use Image.quantize, which can change indices." if mode in ("RGB", "RGBA")
                else "")
        raise DataError(f"mask {path} has mode {mode!r}; expected a palette-index PNG (mode 'P' or "
                        f"'L') whose pixel values are class indices.{hint}")
    return check_label_values(mask, path, num_classes, ignore_index, void_values)


def read_mat_label(path: Path, num_classes: int, ignore_index: int = 255,
                   void_values: Sequence[int] = ()) -> np.ndarray:
    """SBD ``cls/<id>.mat``: the struct ``GTcls``, field ``Segmentation`` (H x W class indices)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... on bad files
        raise DataError(f"cannot read label {path}: {e}; {MAT_HINT}") from e
    seg = getattr(mat.get("GTcls"), "Segmentation", None)
    if seg is None:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"label {path} has no GTcls.Segmentation (variables: {keys}); {MAT_HINT}")
    seg = np.asarray(seg)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise DataError(f"label {path}: GTcls.Segmentation is {seg.dtype} with shape {seg.shape}; "
                        f"{MAT_HINT}")
    return check_label_values(seg, path, num_classes, ignore_index, void_values)


def read_label(path: Path, num_classes: int, ignore_index: int = 255,
               void_values: Sequence[int] = ()) -> np.ndarray:
    """A label file of any supported kind: ``.mat`` (SBD) or an index PNG."""
    reader = read_mat_label if Path(path).suffix.lower() == ".mat" else read_mask
    return reader(path, num_classes, ignore_index, void_values)


# --------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample:
    """One image/label pair and where it was listed (for error messages)."""

    id: str
    image: Path
    label: Path
    source: str  # e.g. "splits/train.txt" or "/data/CamVid/train.txt line 3"
    image_note: str = ""  # added to the "missing image" message (e.g. other extensions tried)

    def missing(self) -> list[str]:
        problems = []
        if not self.image.is_file():
            problems.append(f"image file {self.image} is missing ({self.image_note}listed in "
                            f"{self.source})")
        if not self.label.is_file():
            problems.append(f"mask file {self.label} is missing (listed in {self.source})")
        return problems


def folder_sample(root: Path, sample_id: str, source: str) -> Sample:
    """A sample of the fcnlab folder layout; the image may be .png, .jpg or .jpeg."""
    root = Path(root)
    candidates = [root / "images" / f"{sample_id}{ext}" for ext in IMAGE_EXTENSIONS]
    image = next((p for p in candidates if p.is_file()), candidates[0])
    note = f"also tried {', '.join(IMAGE_EXTENSIONS[1:])}; "
    return Sample(sample_id, image, root / "masks" / f"{sample_id}.png", source, note)


def summarize_problems(problems: Sequence[str], what: str, limit: int = 5) -> str:
    """One message for a list of problems: the first ``limit`` and how many more there are."""
    if len(problems) == 1:
        return problems[0]
    shown = "; ".join(problems[:limit]) + ("; ..." if len(problems) > limit else "")
    return (f"{len(problems)} bad files in {what}: {shown} (`python verify.py "
            "data=...` lists every one; data.datamodule.skip_bad_files=true drops them)")


# --------------------------------------------------------------------------- datasets
class SegmentationDataset(Dataset):
    """Samples ``{"image": float32 3xHxW, "mask": int64 HxW, "id": str}`` of a list of samples.

    ``transform`` (default None: no augmentation, the FCN protocol) is applied jointly to the uint8
    RGB image and the uint8 mask before preprocessing, albumentations-style:
    ``transform(image=..., mask=...) -> {"image": ..., "mask": ...}``. An albumentations Compose
    is re-seeded once per DataLoader worker from the worker's seed (see :meth:`_reseed`).

    ``missing``: what to do with samples whose files do not exist, checked at construction:
    ``"raise"`` (DataError naming them), ``"skip"`` (log and drop) or ``"keep"`` (for ``verify``,
    which reports them through :meth:`check`).
    """

    def __init__(self, samples: Iterable[Sample], *, num_classes: int, preprocess: str = "caffe",
                 ignore_index: int = 255, transform: Callable | None = None,
                 void_values: Sequence[int] = (), name: str = "split", missing: str = "raise"):
        self.samples = list(samples)
        self.name = name
        self.num_classes = int(num_classes)
        self.preprocess = check_mode(preprocess)
        self.ignore_index = int(ignore_index)
        self.void_values = tuple(int(v) for v in void_values)
        self.transform = transform
        self.cache_dir: Path | None = None  # where derived files (class weights) may be cached
        self._seed_key = None
        if not self.samples:
            raise DataError(f"{name} has no images")
        if missing != "keep":
            bad = {i: p for i, s in enumerate(self.samples) if (p := s.missing())}
            if bad and missing == "raise":
                raise DataError(summarize_problems(sum(bad.values(), []), name))
            self.drop(bad)

    # -- the old SegmentationFolderDataset attributes, kept for callers
    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    @property
    def image_paths(self) -> list[Path]:
        return [s.image for s in self.samples]

    @property
    def mask_paths(self) -> list[Path]:
        return [s.label for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    # -- reading and checking
    def read_label(self, index: int) -> np.ndarray:
        return read_label(self.samples[index].label, self.num_classes, self.ignore_index,
                          self.void_values)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The checked uint8 RGB image and uint8 label of sample ``index`` (DataError if bad)."""
        sample = self.samples[index]
        image = read_image(sample.image)
        mask = self.read_label(index)
        if image.shape[:2] != mask.shape:
            raise DataError(f"image {sample.image} is {image.shape[0]}x{image.shape[1]} (HxW) but "
                            f"mask {sample.label} is {mask.shape[0]}x{mask.shape[1]}; they must "
                            "match")
        return image, mask

    def check(self, index: int) -> tuple[str | None, np.ndarray | None]:
        """``(problem, None)`` for a bad sample, ``(None, label pixel counts)`` for a good one.

        Counts have ``num_classes + 1`` entries, the last one for void.
        """
        sample = self.samples[index]
        missing = sample.missing()
        if missing:
            return "; ".join(missing), None
        try:
            _, mask = self.load(index)
        except DataError as e:
            return str(e), None
        counts = np.bincount(mask.ravel(), minlength=256)
        return None, np.append(counts[:self.num_classes], counts[self.ignore_index])

    def scan(self, workers: int | None = None) -> list[tuple[int, str | None, np.ndarray | None]]:
        """:meth:`check` every sample (threads: PIL and zlib decode without the GIL)."""
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(self.check, range(len(self))))
        return [(i, p, c) for i, (p, c) in enumerate(results)]

    def drop(self, problems: dict[int, list[str] | str]) -> None:
        """Remove the samples at the keys of ``problems``, logging each with its reason."""
        for i, reason in sorted(problems.items()):
            reason = "; ".join(reason) if isinstance(reason, list) else reason
            log.warning("skipping %s sample %r: %s", self.name, self.samples[i].id, reason)
        self.samples = [s for i, s in enumerate(self.samples) if i not in problems]
        if not self.samples:
            raise DataError(f"{self.name} has no usable images left after skipping bad files")

    # -- the sample
    def _reseed(self) -> None:
        """Give each DataLoader worker its own augmentation stream, reproducibly.

        A Compose seeded in the main process would be copied into every worker with the same
        state (identical crops in every worker, and again every epoch unless workers persist).
        So inside a worker the Compose is re-seeded from the worker's torch seed, which PyTorch
        derives from the (seeded) loader generator, the epoch's iterator and the worker id.
        In the main process (num_workers=0) the Compose keeps the seed it was built with.
        """
        reseed = getattr(self.transform, "set_random_seed", None)
        info = get_worker_info()
        if reseed is None or info is None or info.seed == self._seed_key:
            return
        self._seed_key = info.seed
        reseed(int(info.seed % 2**32))

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        # The training sampler (fcnlab.data.sampling.EpochSampler) hands out (index, seed): the
        # augmentation of a sample then depends on (seed, epoch, index) only, which makes it
        # independent of the workers and exactly resumable.
        seed = None
        if isinstance(index, tuple):
            index, seed = index
        image, mask = self.load(index)
        if self.transform is not None:
            if seed is not None and hasattr(self.transform, "set_random_seed"):
                self.transform.set_random_seed(int(seed))
            else:
                self._reseed()
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {
            "image": preprocess(np.asarray(image), self.preprocess),
            "mask": torch.from_numpy(np.asarray(mask).astype(np.int64)),
            "id": self.samples[index].id,
        }


class SegmentationFolderDataset(SegmentationDataset):
    """One split of the fcnlab folder layout (module docstring)."""

    def __init__(self, root, split: str, *, num_classes: int, preprocess: str = "caffe",
                 ignore_index: int = 255, transform: Callable | None = None,
                 missing: str = "raise"):
        self.root = Path(root)
        self.split = split
        source = f"splits/{split}.txt"
        samples = [folder_sample(self.root, i, source) for i in read_split(self.root, split)]
        super().__init__(samples, num_classes=num_classes, preprocess=preprocess,
                         ignore_index=ignore_index, transform=transform,
                         name=f"split {split!r} of {self.root}", missing=missing)
        self.cache_dir = self.root


def collate(batch: list[dict]) -> dict:
    """``default_collate`` with a clear error when the images of one batch differ in size."""
    sizes = [tuple(s["image"].shape[-2:]) for s in batch]
    if len(set(sizes)) > 1:
        shown = ", ".join(f"{s['id']} {h}x{w}" for s, (h, w) in zip(batch, sizes))
        raise DataError(f"the images of one batch differ in size ({shown}); use batch_size 1 "
                        "(the FCN protocol) or data.datamodule.augment.crop=[H, W] for training, "
                        "and eval_batch_size 1 for evaluation")
    return torch.utils.data.default_collate(batch)
