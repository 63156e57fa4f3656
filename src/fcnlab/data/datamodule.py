"""LightningDataModules over the fcnlab folder layout (see :mod:`fcnlab.data.dataset`).

``FolderDataModule`` serves any folder in that layout (a user's converted data);
``SyntheticDataModule`` first generates the embedded synthetic dataset into a folder whose name
is derived from every generator parameter, then reads it through exactly the same code.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader

from fcnlab.data.dataset import SegmentationFolderDataset
from fcnlab.data.synthetic import GENERATOR_VERSION, SYNTHETIC_CLASSES, generate_synthetic
from fcnlab.data.transforms import check_mode
from fcnlab.errors import ConfigError, DataError


def _int(name: str, value, minimum: int = 0) -> int:
    """``value`` as an int >= minimum, else a one-line ConfigError (Hydra passes raw YAML)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"data.{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def parse_image_size(value) -> tuple[int, int]:
    """Accept any sequence of two positive ints (list, tuple, OmegaConf ListConfig) as (H, W)."""
    message = f"data.image_size: expected two positive ints [H, W], got {value!r}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(message)
    try:
        return _int("image_size", value[0], 1), _int("image_size", value[1], 1)
    except ConfigError:
        raise ConfigError(message) from None


class FolderDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``root`` (layout in :mod:`fcnlab.data.dataset`).

    Class names come from ``root/classes.yaml`` (key ``classes``) unless ``class_names`` is given.
    The training loader shuffles with a generator seeded by ``seed`` and drops the last partial
    batch; evaluation loaders keep every image, in split-file order.
    """

    def __init__(self, root, *, batch_size: int = 8, eval_batch_size: int | None = None,
                 num_workers: int = 0, preprocess: str = "caffe", pin_memory: bool = False,
                 train_split: str = "train", val_split: str = "val", test_split: str = "test",
                 ignore_index: int = 255, seed: int = 0, class_names: Sequence[str] | None = None,
                 train_transform: Callable | None = None):
        super().__init__()
        self.root = Path(root)
        self.batch_size = _int("batch_size", batch_size, 1)
        self.eval_batch_size = (self.batch_size if eval_batch_size is None
                                else _int("eval_batch_size", eval_batch_size, 1))
        self.num_workers = _int("num_workers", num_workers)
        self.preprocess = check_mode(preprocess)
        self.pin_memory = bool(pin_memory)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.ignore_index = _int("ignore_index", ignore_index)
        self.seed = _int("seed", seed)
        self.train_transform = train_transform
        self._class_names = tuple(str(c) for c in class_names) if class_names else None
        self.datasets: dict[str, SegmentationFolderDataset] = {}

    # -- classes -------------------------------------------------------------------------------
    def _read_classes(self) -> tuple[str, ...]:
        path = self.root / "classes.yaml"
        try:
            info = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise DataError(f"cannot read {path}: {e}; expected a YAML file with 'classes: "
                            "[name, ...]' (or pass class_names)") from e
        names = info.get("classes") if isinstance(info, dict) else None
        if not isinstance(names, list) or not names:
            raise DataError(f"{path} has no 'classes' list; expected 'classes: [name, ...]' in "
                            "index order")
        declared = info.get("ignore_index", self.ignore_index)
        if declared != self.ignore_index:
            raise ConfigError(f"data.ignore_index is {self.ignore_index} but {path} declares "
                              f"ignore_index: {declared}; make them agree")
        return tuple(str(n) for n in names)

    @property
    def class_names(self) -> tuple[str, ...]:
        if self._class_names is None:
            self._class_names = self._read_classes()
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- datasets and loaders ------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("test",)}.get(stage, ("train", "val", "test"))
        for key in wanted:
            if key not in self.datasets:
                self.datasets[key] = SegmentationFolderDataset(
                    self.root, self.splits[key], num_classes=self.num_classes,
                    preprocess=self.preprocess, ignore_index=self.ignore_index,
                    transform=self.train_transform if key == "train" else None)

    def _dataset(self, key: str) -> SegmentationFolderDataset:
        if key not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(key, "test"))
        return self.datasets[key]

    def _loader(self, dataset, batch_size: int, train: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=train, drop_last=train,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        if len(dataset) < self.batch_size:
            raise DataError(f"split {self.splits['train']!r} of {self.root} has {len(dataset)} "
                            f"images, fewer than batch_size={self.batch_size}; with drop_last "
                            "there would be no batch: lower data.batch_size")
        return self._loader(dataset, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), self.eval_batch_size, train=False)

    predict_dataloader = test_dataloader


class SyntheticDataModule(FolderDataModule):
    """The embedded synthetic dataset, generated on first use into ``data_dir``.

    The folder name encodes every generator parameter (and the generator version), so two
    configurations never share a folder and a finished folder is reused by later runs.
    """

    def __init__(self, data_dir, *, image_size=(96, 128), num_train: int = 400,
                 num_val: int = 60, num_test: int = 60, seed: int = 0, void_width: int = 1,
                 **folder_kwargs):
        self.image_size = parse_image_size(image_size)
        self.num_images = (_int("num_train", num_train, 1), _int("num_val", num_val, 1),
                           _int("num_test", num_test, 1))
        self.data_seed = _int("seed", seed)
        self.void_width = _int("void_width", void_width)
        h, w = self.image_size
        name = (f"synthetic-v{GENERATOR_VERSION}-{h}x{w}-n{'-'.join(map(str, self.num_images))}"
                f"-s{self.data_seed}-void{self.void_width}")
        folder_kwargs.setdefault("class_names", SYNTHETIC_CLASSES)
        folder_kwargs.setdefault("seed", self.data_seed)
        super().__init__(Path(data_dir) / name, **folder_kwargs)

    def prepare_data(self) -> None:
        generate_synthetic(self.root, image_size=self.image_size, num_train=self.num_images[0],
                           num_val=self.num_images[1], num_test=self.num_images[2],
                           seed=self.data_seed, void_width=self.void_width)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # idempotent; makes setup() alone enough outside a Trainer
        super().setup(stage)
