"""PASCAL VOC 2011/2012 segmentation, with the SBD extra labels (docs/reference.md §4).

Layouts read (nothing is downloaded or converted)::

    <voc_root>/JPEGImages/<id>.jpg
    <voc_root>/SegmentationClass/<id>.png        palette PNG: index = class 0-20, 255 = void
    <voc_root>/ImageSets/Segmentation/{train,val,trainval}.txt
    <sbd_root>/img/<id>.jpg, <sbd_root>/cls/<id>.mat (struct GTcls, field Segmentation),
    <sbd_root>/{train,val}.txt                   (sbd_root = .../benchmark_RELEASE/dataset)
    <aug_label_dir>/<id>.png + <aug_list>        the pre-converted "SegmentationClassAug" form;
                                                 list lines hold an id, or an image and a label
                                                 path (DeepLab style) resolved by file name

Set names for ``train_sets`` / ``val_set`` / ``test_set``: ``voc_train``, ``voc_val``,
``voc_trainval``, ``sbd_train``, ``sbd_val``, ``aug_train``; anything else is the path of a list
file of VOC ids with VOC labels (e.g. FCN's ``seg11valid.txt``). A relative path is looked up
from the working directory, then in ``<voc_root>/ImageSets/Segmentation/``.

The training set is the union of ``train_sets`` (an id listed twice keeps the label of the first
set that lists it) minus every id of the validation and test sets when ``exclude_val_from_train``
(the default). With ``exclude_val_from_train: false`` an overlap is refused with a ConfigError
naming the shared ids: SBD train overlapping VOC val is the most common reason published numbers
do not reproduce (docs/reference.md §6).

Image sizes differ (up to 500x500), so training uses batch 1 (the FCN protocol) unless
``augment.crop`` is set, and evaluation always uses batch 1 (whole images, original resolution).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fcnlab.data.datamodule import SegmentationDataModule
from fcnlab.data.dataset import Sample, read_list_file
from fcnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
VOC_SETS = ("voc_train", "voc_val", "voc_trainval")
SBD_SETS = ("sbd_train", "sbd_val")
AUG_SETS = ("aug_train",)
SET_NAMES = VOC_SETS + SBD_SETS + AUG_SETS


def _overlap_message(a: str, b: str, shared: Sequence[str]) -> str:
    shown = ", ".join(sorted(shared)[:10]) + (", ..." if len(shared) > 10 else "")
    return (f"data: the training set ({a}) and the {b} share {len(shared)} images ({shown}); "
            "training on evaluation images inflates every score. Set data.datamodule."
            "exclude_val_from_train=true to drop them from training, or choose other lists")


class VOCDataModule(SegmentationDataModule):
    """VOC (+ SBD / SegmentationClassAug) train, val and optional test sets; 21 classes."""

    uniform_size = False

    def __init__(self, voc_root, *, sbd_root=None, aug_label_dir=None, aug_list=None,
                 train_sets: Sequence[str] = ("voc_train",), val_set: str = "voc_val",
                 test_set: str | None = None, exclude_val_from_train: bool = True,
                 batch_size: int = 1, eval_batch_size: int = 1, **kwargs):
        self.voc_root = Path(voc_root)
        self.sbd_root = Path(sbd_root) if sbd_root else None
        self.aug_label_dir = Path(aug_label_dir) if aug_label_dir else None
        self.aug_list = Path(aug_list) if aug_list else None
        if isinstance(train_sets, str):
            train_sets = [train_sets]
        if not train_sets or not all(isinstance(s, str) and s for s in train_sets):
            raise ConfigError(f"data.train_sets: expected a list of set names or list files "
                              f"(from {list(SET_NAMES)}), got {train_sets!r}")
        self.train_sets = tuple(train_sets)
        for key, value in (("val_set", val_set), ("test_set", test_set)):
            if value is not None and not (isinstance(value, str) and value):
                raise ConfigError(f"data.{key}: expected a set name or a list file path, got "
                                  f"{value!r}")
        if val_set is None:
            raise ConfigError("data.val_set: expected a set name (voc_val) or a list file path "
                              "(e.g. seg11valid.txt)")
        self.val_set, self.test_set = val_set, test_set
        if not isinstance(exclude_val_from_train, bool):
            raise ConfigError(f"data.exclude_val_from_train: expected true or false, got "
                              f"{exclude_val_from_train!r}")
        self.exclude_val_from_train = exclude_val_from_train
        for spec in (*self.train_sets, val_set, test_set):
            if spec in SBD_SETS and self.sbd_root is None:
                raise ConfigError(f"data: set {spec!r} needs data.datamodule.sbd_root (the SBD "
                                  "benchmark_RELEASE/dataset folder), which is null")
            if spec in AUG_SETS and (self.aug_label_dir is None or self.aug_list is None):
                raise ConfigError(f"data: set {spec!r} needs data.datamodule.aug_label_dir and "
                                  "aug_list (SegmentationClassAug and train_aug.txt)")
        self._sets: dict[str, list[Sample]] = {}
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, **kwargs)

    @property
    def default_class_names(self) -> tuple[str, ...]:
        return VOC_CLASSES

    @property
    def cache_dir(self) -> Path:
        return self.voc_root

    def split_names(self) -> dict[str, str | None]:
        return {"train": " + ".join(self.train_sets), "val": self.val_set, "test": self.test_set}

    # -- sets ------------------------------------------------------------------------------------
    def _list_path(self, spec: str) -> Path:
        path = Path(spec)
        if not path.is_absolute() and not path.exists():
            inside = self.voc_root / "ImageSets" / "Segmentation" / path
            if inside.exists():
                return inside
        return path

    def read_set(self, spec: str) -> list[Sample]:
        """The samples a set name or list file stands for (list files are read once)."""
        if spec in self._sets:
            return self._sets[spec]
        voc_images = self.voc_root / "JPEGImages"
        if spec in SBD_SETS:
            assert self.sbd_root is not None
            path = self.sbd_root / f"{spec[4:]}.txt"
            images, labels, ext = self.sbd_root / "img", self.sbd_root / "cls", ".mat"
        elif spec in AUG_SETS:
            path, images, labels, ext = self.aug_list, voc_images, self.aug_label_dir, ".png"
        else:
            path = (self.voc_root / "ImageSets" / "Segmentation" / f"{spec[4:]}.txt"
                    if spec in VOC_SETS else self._list_path(spec))
            images, labels, ext = voc_images, self.voc_root / "SegmentationClass", ".png"
        samples = []
        for line, tokens in read_list_file(path, f"set {spec!r}"):
            source = f"{path} line {line}"
            if len(tokens) == 1:
                sample_id = tokens[0]
                image, label = images / f"{sample_id}.jpg", labels / f"{sample_id}{ext}"
            elif len(tokens) == 2:  # "/JPEGImages/x.jpg /SegmentationClassAug/x.png"
                sample_id = Path(tokens[0]).stem
                image, label = images / Path(tokens[0]).name, labels / Path(tokens[1]).name
            else:
                raise DataError(f"{source}: expected an image id (or an image and a label path), "
                                f"got {' '.join(tokens)!r}")
            samples.append(Sample(sample_id, image, label, source))
        self._sets[spec] = samples
        return samples

    def build_samples(self, key: str, *, strict: bool = True) -> list[Sample]:
        if key == "val":
            return self.read_set(self.val_set)
        if key == "test":
            if self.test_set is None:
                raise DataError("VOCDataModule has no test set configured (data.test_set)")
            return self.read_set(self.test_set)
        union: dict[str, Sample] = {}
        for spec in self.train_sets:
            for sample in self.read_set(spec):
                union.setdefault(sample.id, sample)
        for spec, what in ((self.val_set, "validation set"), (self.test_set, "test set")):
            if spec is None:
                continue
            shared = set(union) & {s.id for s in self.read_set(spec)}
            if not shared:
                continue
            if not self.exclude_val_from_train:
                if not strict:
                    continue
                raise ConfigError(_overlap_message(" + ".join(self.train_sets),
                                                   f"{what} ({spec})", list(shared)))
            log.info("removed %d images of the %s (%s) from the training set", len(shared),
                     what, spec)
            for sample_id in shared:
                del union[sample_id]
        if not union:
            raise DataError(f"the training set ({' + '.join(self.train_sets)}) has no images left "
                            "after removing the validation/test images")
        return list(union.values())
