"""LightningDataModules: a shared base, the fcnlab folder layout, the synthetic data set.

:class:`SegmentationDataModule` holds everything the data sets share (loaders, batch-size
checks, augmentation, file checks, class weights); a subclass only says how to list the
:class:`~fcnlab.data.dataset.Sample` of each split (``build_samples``). ``FolderDataModule`` serves
any folder in the fcnlab layout (a user's converted data); ``SyntheticDataModule`` first generates
the embedded synthetic dataset into a folder whose name is derived from every generator parameter,
then reads it through exactly the same code. VOC/SBD and CamVid live in ``voc.py`` / ``camvid.py``.

Bad files: with ``check_files`` (true in the real-data configs) every image and label of a split
is decoded and checked when the split is set up, and a DataError lists the bad ones before
training starts. With ``skip_bad_files`` they are instead logged one by one and dropped.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from fcnlab.data.augment import build_augment, crop_size
from fcnlab.data.class_weights import median_frequency_weights, validate_weight_list
from fcnlab.data.dataset import (Sample, SegmentationDataset, collate, folder_sample, read_split,
                                 summarize_problems)
from fcnlab.data.synthetic import GENERATOR_VERSION, SYNTHETIC_CLASSES, generate_synthetic
from fcnlab.data.transforms import check_mode
from fcnlab.data.sampling import ResumableLoader, ShardSampler
from fcnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)
SPLIT_KEYS = ("train", "val", "test")


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


class SegmentationDataModule(L.LightningDataModule):
    """Train/val/test loaders over the samples that :meth:`build_samples` lists.

    The training loader shuffles with a generator seeded by ``seed`` and drops the last partial
    batch; evaluation loaders keep every image, in list order, untransformed (scores are computed
    at the label's original resolution). ``augment`` (see :mod:`fcnlab.data.augment`) or a
    ready-made ``train_transform`` applies to training samples only.

    Subclasses set ``uniform_size = False`` when the images differ in size (VOC): then a batch
    size above 1 needs ``augment.crop`` (training) and evaluation must use batch 1.
    """

    uniform_size = True
    void_values: tuple[int, ...] = ()

    def __init__(self, *, batch_size: int = 8, eval_batch_size: int | None = None,
                 num_workers: int = 0, preprocess: str = "caffe", pin_memory: bool = False,
                 ignore_index: int = 255, seed: int = 0, class_names: Sequence[str] | None = None,
                 train_transform: Callable | None = None, augment: Mapping | None = None,
                 skip_bad_files: bool = False, check_files: bool = False, **unknown):
        if unknown:
            synthetic_only = {"image_size", "num_train", "num_val", "num_test", "void_width"}
            hint = (" (image_size/num_train/... are settings of data=synthetic; debug=fast sets "
                    "them, so on real data override model.net.width/trainer.max_steps instead)"
                    if set(unknown) & synthetic_only else "")
            raise ConfigError(f"data.datamodule: unknown keys {sorted(unknown)} for "
                              f"{type(self).__name__}{hint}")
        super().__init__()
        self.batch_size = _int("batch_size", batch_size, 1)
        self.eval_batch_size = (self.batch_size if eval_batch_size is None
                                else _int("eval_batch_size", eval_batch_size, 1))
        self.num_workers = _int("num_workers", num_workers)
        self.preprocess = check_mode(preprocess)
        self.pin_memory = bool(pin_memory)
        self.ignore_index = _int("ignore_index", ignore_index)
        self.seed = _int("seed", seed)
        for name, flag in (("skip_bad_files", skip_bad_files), ("check_files", check_files)):
            if not isinstance(flag, bool):
                raise ConfigError(f"data.{name}: expected true or false, got {flag!r}")
        self.skip_bad_files = skip_bad_files
        self.check_files = check_files
        if train_transform is not None and augment:
            raise ConfigError("data: give either augment (a config) or train_transform, not both")
        self.augment = dict(augment) if augment else None
        self.train_transform = (train_transform if train_transform is not None
                                else build_augment(self.augment, seed=self.seed))
        self._class_names = tuple(str(c) for c in class_names) if class_names else None
        self.datasets: dict[str, SegmentationDataset] = {}
        if not self.uniform_size:
            self._check_batch_sizes()

    def _check_batch_sizes(self) -> None:
        name = type(self).__name__
        # A user-made train_transform is trusted to produce equal sizes; a config must crop.
        crops = (crop_size(self.augment) is not None if self.augment
                 else self.train_transform is not None)
        if self.batch_size > 1 and not crops:
            raise ConfigError(
                f"data.batch_size={self.batch_size}, but the images of {name} differ in size and "
                "no crop is configured, so they cannot be stacked into a batch: use batch_size 1 "
                "(the FCN protocol: whole images, no resizing) or set data.datamodule.augment."
                "crop=[H, W] (e.g. augment={scale: [0.5, 2.0], crop: [321, 321], hflip: true})")
        if self.eval_batch_size > 1:
            raise ConfigError(
                f"data.eval_batch_size={self.eval_batch_size}, but the images of {name} differ "
                "in size and evaluation scores every image whole at its label's resolution: use "
                "eval_batch_size 1")

    # -- what a subclass provides ----------------------------------------------------------------
    @property
    def default_class_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def split_names(self) -> dict[str, str | None]:
        """Human-readable name of each split key (train/val/test); None: not configured."""
        raise NotImplementedError

    def build_samples(self, key: str, *, strict: bool = True) -> list[Sample]:
        """The samples of split ``key``; DataError/ConfigError when the listing itself is bad.

        ``strict=False`` (used by ``verify`` after reporting the error) lists the samples even
        when the splits are inconsistent (VOC: train overlapping val), so their files get checked.
        """
        raise NotImplementedError

    @property
    def cache_dir(self) -> Path | None:
        """Folder for files derived from the data (class-weight cache); None: no cache."""
        return None

    # -- classes ---------------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        if self._class_names is None:
            self._class_names = tuple(self.default_class_names)
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_weights(self, kind=None) -> list[float] | None:
        """Per-class loss weights for ``loss.class_weights``.

        ``None`` -> None (unweighted); ``"median_freq"`` -> SegNet's median-frequency weights of
        the training split (computed once, then cached next to the data); a list -> checked to
        hold ``num_classes`` positive numbers and returned as floats. ConfigError otherwise.
        """
        if kind is None:
            return None
        if isinstance(kind, str):
            if kind != "median_freq":
                raise ConfigError(f"loss.class_weights: expected null, 'median_freq' or a list of "
                                  f"{self.num_classes} positive numbers, got {kind!r}")
            dataset = self._dataset("train")
            return median_frequency_weights(dataset, self.num_classes, self.ignore_index,
                                            cache_dir=self.cache_dir, split="train")
        return validate_weight_list(kind, self.num_classes)

    # -- datasets and loaders --------------------------------------------------------------------
    def make_dataset(self, key: str, missing: str | None = None,
                     strict: bool = True) -> SegmentationDataset:
        """The dataset of split ``key``, without the full-file scan (``verify`` uses this)."""
        if missing is None:
            missing = "skip" if self.skip_bad_files else "raise"
        dataset = SegmentationDataset(
            self.build_samples(key, strict=strict), num_classes=self.num_classes,
            preprocess=self.preprocess, ignore_index=self.ignore_index, void_values=self.void_values,
            transform=self.train_transform if key == "train" else None,
            name=f"{key} split ({self.split_names()[key]})", missing=missing)
        dataset.cache_dir = self.cache_dir
        return dataset

    def _setup_split(self, key: str) -> SegmentationDataset:
        dataset = self.make_dataset(key)
        if self.check_files or self.skip_bad_files:
            bad = {i: problem for i, problem, _ in dataset.scan() if problem}
            if bad and not self.skip_bad_files:
                raise DataError(summarize_problems(list(bad.values()), dataset.name))
            if bad:
                dataset.drop(bad)
        return dataset

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("test",)}.get(stage, SPLIT_KEYS)
        names = self.split_names()
        for key in wanted:
            if key not in self.datasets and names.get(key) is not None:
                self.datasets[key] = self._setup_split(key)

    def _dataset(self, key: str) -> SegmentationDataset:
        if key not in self.datasets:
            if self.split_names().get(key) is None:
                raise DataError(f"{type(self).__name__} has no {key} split configured")
            self.setup({"train": "fit", "val": "validate"}.get(key, "test"))
        return self.datasets[key]

    def _loader(self, dataset, batch_size: int, train: bool) -> DataLoader:
        """Training: a resumable, seeded order (fcnlab.data.sampling.ResumableLoader). Evaluation: each
        process its own shard of the split, no sample repeated (exact under DDP)."""
        common = dict(collate_fn=collate, num_workers=self.num_workers,
                      pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
        if train:
            # With gradient accumulation every epoch is a whole number of SGD iterations
            # (EpochSampler); the trainer is attached to the data module by Lightning.
            trainer = getattr(self, "trainer", None)
            steps = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
            return ResumableLoader(dataset, batch_size=batch_size, seed=self.seed,
                                   batches_per_step=steps, **common)
        # Its own generator: creating an iterator draws a seed from it, never from the global
        # RNG, so evaluations cannot shift the training's dropout masks (resume parity).
        return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset)),
                          generator=torch.Generator().manual_seed(self.seed), **common)

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        if len(dataset) < self.batch_size:
            raise DataError(f"{dataset.name} has {len(dataset)} images, fewer than batch_size="
                            f"{self.batch_size}; with drop_last there would be no batch: lower "
                            "data.batch_size")
        return self._loader(dataset, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), self.eval_batch_size, train=False)

    predict_dataloader = test_dataloader


class FolderDataModule(SegmentationDataModule):
    """The fcnlab folder layout under ``root`` (:mod:`fcnlab.data.dataset`): a user's own data.

    Class names come from ``root/classes.yaml`` (key ``classes``; an optional ``palette`` is for
    display only) unless ``class_names`` is given. Splits come from ``root/splits/<name>.txt``;
    when ``root/splits/`` does not exist and ``val_fraction`` is set, the sorted ids of
    ``root/masks/*.png`` are shuffled with ``seed`` and the first ``round(val_fraction * n)``
    (at least 1) become the validation split, the rest the training split (both kept in sorted
    order), so the split is the same on every run; there is no test split then.
    """

    def __init__(self, root, *, train_split: str = "train", val_split: str = "val",
                 test_split: str = "test", val_fraction: float | None = None, **kwargs):
        self.root = Path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        if val_fraction is not None and (isinstance(val_fraction, bool) or not isinstance(
                val_fraction, numbers.Real) or not 0 < val_fraction < 1):
            raise ConfigError(f"data.val_fraction: expected null or a number in (0, 1), got "
                              f"{val_fraction!r}")
        self.val_fraction = val_fraction
        self._derived: dict[str, list[str]] | None = None
        super().__init__(**kwargs)

    @property
    def cache_dir(self) -> Path:
        return self.root

    @property
    def default_class_names(self) -> tuple[str, ...]:
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

    def _uses_derived_splits(self) -> bool:
        return not (self.root / "splits").is_dir() and self.val_fraction is not None

    def split_names(self) -> dict[str, str | None]:
        if self._uses_derived_splits():
            return {"train": f"{1 - self.val_fraction:g} of {self.root}/masks",
                    "val": f"{self.val_fraction:g} of {self.root}/masks", "test": None}
        return {k: f"{self.root}/splits/{v}.txt" for k, v in self.splits.items()}

    def derived_splits(self) -> dict[str, list[str]]:
        """The deterministic train/val ids drawn from ``masks/`` with ``val_fraction``."""
        if self._derived is None:
            ids = sorted(p.stem for p in (self.root / "masks").glob("*.png"))
            if len(ids) < 2:
                raise DataError(f"{self.root}/masks holds {len(ids)} label PNGs; val_fraction "
                                "needs at least 2 to split into train and val")
            n_val = min(len(ids) - 1, max(1, round(self.val_fraction * len(ids))))
            order = np.random.default_rng(self.seed).permutation(len(ids))
            val = set(order[:n_val].tolist())
            self._derived = {"train": [i for k, i in enumerate(ids) if k not in val],
                             "val": [i for k, i in enumerate(ids) if k in val]}
        return self._derived

    def build_samples(self, key: str, *, strict: bool = True) -> list[Sample]:
        if self._uses_derived_splits():
            source = f"{self.root}/masks (val_fraction={self.val_fraction:g})"
            return [folder_sample(self.root, i, source) for i in self.derived_splits()[key]]
        if not (self.root / "splits").is_dir():
            raise DataError(f"{self.root} has no splits/ folder; add splits/{{train,val,test}}.txt "
                            "(one id per line) or set data.datamodule.val_fraction to derive "
                            "train/val from the sorted ids")
        split = self.splits[key]
        return [folder_sample(self.root, i, f"splits/{split}.txt")
                for i in read_split(self.root, split)]


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
