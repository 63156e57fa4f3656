"""Pretrain a VGG16 *classifier* on object-centred crops, so FCN-32s-fixed has features to fix.

FCN-32s-fixed (CVPR 2015, Table 2) learns only ``score_fr`` on top of *fixed features of a
classifier*: ImageNet VGG16 with its fully connected layers turned into convolutions. At embedded
scale there is no ImageNet, so ``python train.py experiment=pretrain_vgg`` makes the classifier
from the data at hand: a :class:`~fcnlab.models.vgg.VGG16Classifier` (fc6, fc7, fc8 included)
at the run's width, trained on crops of the *training* split, each labelled with the class of
the object at its centre, and saved in the torchvision layout to ``<run>/vgg16_classifier.pt``.
``python train.py model=fcn32s_fixed model.pretrained=<run>/vgg16_classifier.pt`` then
convolutionalizes it into the FCN trunk (``fcnlab.models.weights``).

The crops (:func:`crop_centres`): for every object instance (a connected component of one class
in the label, ``scipy.ndimage.label``; fragments under ``min_pixels`` dropped) one crop centred on
its centre of mass, labelled with its class; per image ``background_per_image`` crops centred on
background pixels at least ``background_margin`` pixels from any other label, labelled background.
Training draws the crops class-balanced (:class:`BalancedSampler`), with a random shift of up to
``jitter`` pixels and a random horizontal flip.

Why 224×224 crops at the image's own scale (the default, ``pretrain.crop_size``): the FCN's
``fc6`` is a 7×7 convolution over ``pool5``, i.e. at each output position it sees a 224×224
window of the (padded) input at stride 32, and the classifier's ``fc6`` only becomes that
convolution if it was trained on a 7×7 ``pool5``, i.e. on 224×224 inputs. Smaller crops would
make ``AdaptiveAvgPool2d(7)`` *upsample* pool5 (64×64 → 2×2 → 7×7 with each cell repeated about
3.5 times), so each of fc6's 7×7 taps would have learnt to read a replicated copy of a cell that,
after convolutionalization, becomes a *different* pool5 cell 32 pixels away: the kernel's
spatial layout would be meaningless. Upscaling object crops to 224 would keep the geometry but
show the classifier objects 2–4× larger than the FCN later sees them. So the crop is a 224×224
window of the image at its own scale, centred on the object; the part outside the image is 0 in
preprocessed space, which is exactly what the FCN's ``conv1_1`` zero padding (100 pixels) feeds
the trunk near the image border. At 1/8 width on a 2-core CPU a 224×224 step of batch 32 takes
about 0.5 s, so the default 400 iterations take a few minutes.

The embedded recipe (conf/scale/embedded.yaml, ``embedded_imagenet``) uses 32×32 crops instead:
pool5 is then one cell centred on the object, the classifier learns several times more per
CPU-minute (docs/embedded.md "The embedded ImageNet"), and fc6 is saved with each filter's learnt
tap sum on its centre tap (:func:`fcnlab.models.fold.centre_fc6`), so that the FCN's fc6 computes
the classifier's verdict on the 32-px cell at each stride-32 position (in effect a 1×1 fc6).

The weights expect the preprocessing they were trained with (``data.datamodule.preprocess``:
``torchvision`` at embedded scale); it is recorded in ``results.json`` and in the sidecar
``vgg16_classifier.pt.json``, from which the FCN run refuses a mismatch (unless
``model.allow_preprocess_mismatch=true``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from fcnlab.callbacks.records import RunRecord, parameter_counts
from fcnlab.config import instantiate, to_plain
from fcnlab.errors import ConfigError, DataError
from fcnlab.models.fold import centre_fc6, folded_state_dict
from fcnlab.models.sidecar import SIDECAR_SUFFIX
from fcnlab.models.vgg import VGG16_FC6_KERNEL, VGG16Classifier, check_width
from fcnlab.models.weights import file_sha256
from fcnlab.optim import param_groups
from fcnlab.callbacks.wandb_media import WandbPredictions
from fcnlab.tasks.trainer import build_trainer, fit_and_validate, start_run

log = logging.getLogger(__name__)

CLASSIFIER_FILE = "vgg16_classifier.pt"
FAITHFUL_CROP = 32 * VGG16_FC6_KERNEL  # 224: pool5 is exactly fc6's 7×7 window
MIN_CROP = 32  # five 2×2 pools: below this pool5 is empty

# Every key of the `pretrain` config group, with its default (conf/experiment/pretrain_vgg.yaml).
DEFAULTS = {
    "width": 0.125, "crop_size": FAITHFUL_CROP, "jitter": 8, "hflip": True, "min_pixels": 8,
    "background_per_image": 1, "background_margin": 16, "batch_size": 32, "eval_batch_size": 64,
    "dropout": 0.5, "fc_init": "torchvision", "save_as": CLASSIFIER_FILE,
    # BN after every conv while training; the file is saved with each BN folded into its conv
    # (fcnlab.models.fold), i.e. the plain vgg16 layout the papers' networks load.
    "batch_norm": False,
    # fc6/fc7 width before the width multiplier (VGG16: 4096); the FCNs that load the file need
    # the same (conf/train.yaml passes deviations.fc_channels).
    "fc_channels": 4096,
    # The recipe's own schedule, over optim.optimizer.lr / trainer.max_steps /
    # trainer.val_check_interval when set: in a table sweep (conf/table/fcn_table-embedded.yaml)
    # the classifier is one job beside FCN jobs whose optim and trainer it shares. null: those.
    "lr": None, "max_steps": None, "val_check_interval": None,
}


from fcnlab.data.crops import (  # noqa: E402,F401 - re-exported for callers and tests
    BalancedSampler, CropDataset, balanced, crop_centres, make_crop, split_crops,
)


# ----------------------------------------------------------------------------- the module
class CropClassifierModule(L.LightningModule):
    """A :class:`VGG16Classifier` trained with cross-entropy on crops; accuracy on val crops.

    After each validation, ``last_scores["val"]`` holds accuracy, mean class accuracy, the
    per-class accuracy and the confusion matrix (what
    :class:`~fcnlab.callbacks.records.RunRecord` stores).
    """

    def __init__(self, *, width: float, num_classes: int, class_names: Sequence[str],
                 optim: dict, dropout: float = 0.5, fc_init: str = "torchvision",
                 batch_norm: bool = False, fc_channels: int = 4096):
        super().__init__()
        self.save_hyperparameters()
        self.net = VGG16Classifier(width, num_classes=num_classes, dropout=dropout,
                                   batch_norm=batch_norm, fc_channels=fc_channels)
        if fc_init == "he":  # fc6/fc7 like the convs; fc8 stays N(0, 0.01)
            for layer in (self.net.classifier[0], self.net.classifier[3]):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        self.class_names = list(class_names)
        self.num_classes = int(num_classes)
        self.last_scores: dict[str, dict] = {}
        self._confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True, batch_size=len(y))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._confusion.zero_()

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        pred = self(x).argmax(1)
        k = self.num_classes
        self._confusion += torch.bincount(y.cpu() * k + pred.cpu(), minlength=k * k).view(k, k)

    def on_validation_epoch_end(self) -> None:
        # Under DDP each rank saw its shard of the val crops: sum the matrices, so every rank
        # scores (and records) the whole split, as the segmentation metrics do.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            summed = self._confusion.to(self.device)
            torch.distributed.all_reduce(summed)
            self._confusion = summed.cpu()
        c = self._confusion.double()
        per_class = c.diag() / c.sum(1)
        present = c.sum(1) > 0
        scores = {
            "accuracy": float(c.diag().sum() / c.sum()),
            "mean_class_accuracy": float(per_class[present].mean()),
            "per_class_accuracy": {n: (float(a) if p else None) for n, a, p in
                                   zip(self.class_names, per_class, present)},
            "crops": int(c.sum()),
            "confusion": self._confusion.tolist(),
        }
        self.log_dict({"val/accuracy": scores["accuracy"],
                       "val/mean_class_accuracy": scores["mean_class_accuracy"]}, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.last_scores["val"] = scores

    def configure_optimizers(self):
        factory = instantiate(self.hparams.optim["optimizer"])  # a functools.partial
        lr = factory.keywords.get("lr")
        if lr is None:
            raise ConfigError("optim.optimizer: expected an 'lr' value")
        groups = param_groups(self.net, lr, factory.keywords.get("weight_decay", 0.0),
                              bias_lr_mult=self.hparams.optim.get("bias_lr_mult", 2.0),
                              bias_decay_mult=self.hparams.optim.get("bias_decay_mult", 0.0))
        optimizer = factory(groups)
        if not self.hparams.optim.get("scheduler"):
            return optimizer
        scheduler = instantiate(self.hparams.optim["scheduler"])(optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ----------------------------------------------------------------------------- the task
class CropLoaders(L.LightningDataModule):
    """The crop loaders as a datamodule, so the run skeleton (:func:`fit_and_validate`) is the
    segmentation task's."""

    def __init__(self, train: DataLoader, val: DataLoader):
        super().__init__()
        self._train, self._val = train, val

    def train_dataloader(self) -> DataLoader:
        return self._train

    def val_dataloader(self) -> DataLoader:
        return self._val


def _finished(output_dir: Path, save_as: str) -> dict | None:
    """The record of a finished run in ``output_dir`` whose classifier file is intact, or None."""
    try:
        record = json.loads((output_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    classifier = record.get("classifier") or {}
    path = output_dir / save_as
    if (record.get("status") == "finished" and path.is_file()
            and classifier.get("sha256") == file_sha256(path)):
        return record
    return None


def pretrain_params(cfg: DictConfig) -> dict:
    """The ``pretrain`` group over :data:`DEFAULTS`, checked; ConfigError naming a bad key."""
    given = to_plain(cfg.get("pretrain")) or {}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"pretrain: unknown keys {unknown}; expected some of {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **given}
    try:
        p["width"] = check_width(p["width"])
    except ConfigError as e:
        raise ConfigError(f"pretrain.width: {e}") from None
    for key, low in (("crop_size", MIN_CROP), ("jitter", 0), ("min_pixels", 1),
                     ("fc_channels", 1), ("background_per_image", 0), ("background_margin", 0),
                     ("batch_size", 1), ("eval_batch_size", 1)):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            hint = " (five 2x2 pools: pool5 must not be empty)" if key == "crop_size" else ""
            raise ConfigError(f"pretrain.{key}: expected an int >= {low}{hint}, got {v!r}")
    for key in ("hflip", "batch_norm"):
        if not isinstance(p[key], bool):
            raise ConfigError(f"pretrain.{key}: expected true or false, got {p[key]!r}")
    if not (isinstance(p["dropout"], (int, float)) and 0 <= p["dropout"] < 1):
        raise ConfigError(f"pretrain.dropout: expected a number in [0, 1), got {p['dropout']!r}")
    if p["fc_init"] not in ("torchvision", "he"):
        raise ConfigError(f"pretrain.fc_init: expected 'torchvision' or 'he', got {p['fc_init']!r}")
    for key in ("max_steps", "val_check_interval"):
        v = p[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"pretrain.{key}: expected null or a positive int (iterations), "
                              f"got {v!r}")
    if p["lr"] is not None and (isinstance(p["lr"], bool) or not isinstance(p["lr"], (int, float))
                                or not p["lr"] > 0):
        raise ConfigError(f"pretrain.lr: expected null or a positive number, got {p['lr']!r}")
    if not isinstance(p["save_as"], str) or not p["save_as"] or "/" in p["save_as"]:
        raise ConfigError(f"pretrain.save_as: expected a file name, got {p['save_as']!r}")
    return p


def pretrain(cfg: DictConfig) -> dict:
    """Train the crop classifier, save it (torchvision layout) and return the run record.

    Reads ``cfg.pretrain`` (:data:`DEFAULTS`), ``cfg.data`` (the splits the crops come from and
    the preprocessing), ``cfg.optim``, ``cfg.trainer`` (``max_steps``, ``val_check_interval``),
    ``cfg.logger``, ``cfg.seed`` and ``cfg.paths.output_dir``. Writes ``<run>/results.json``
    (every validation's crop accuracy, the file's SHA-256) and ``<run>/<save_as>`` with its sidecar.
    """
    p = pretrain_params(cfg)
    schedule = {}
    for key in ("max_steps", "val_check_interval"):
        v = p[key] if p[key] is not None else OmegaConf.select(cfg, f"trainer.{key}")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"trainer.{key}: expected a positive int (iterations), got {v!r}")
        schedule[key] = v
    optim = to_plain(cfg.optim)
    if p["lr"] is not None:
        optim["optimizer"]["lr"] = p["lr"]
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("resume") == "auto" and (done := _finished(output_dir, p["save_as"])):
        # A re-run table sweep finishes what is missing: the classifier the later jobs were
        # initialised from stays the one they were initialised from.
        log.info("pretrain: %s already finished (sha256 %s): not trained again",
                 done["classifier"]["path"], done["classifier"]["sha256"])
        return done
    start_run(cfg)
    one_cell = p["crop_size"] // MIN_CROP == 1  # five floor 2x2 pools: pool5 is 1x1
    if p["crop_size"] != FAITHFUL_CROP and not one_cell:
        log.warning("pretrain.crop_size=%d: pool5 is not 7x7, so the convolutionalized fc6 will "
                    "not compute what the classifier learnt (224 is the faithful size; 32-63 "
                    "saves fc6 as its centre tap)", p["crop_size"])

    datamodule = instantiate(cfg.data.datamodule)
    if datamodule.num_classes != cfg.data.num_classes:
        raise ConfigError(f"data.num_classes is {cfg.data.num_classes} but the data set has "
                          f"{datamodule.num_classes} classes")
    datamodule.prepare_data()
    datamodule.setup("fit")
    mode = datamodule.preprocess
    k = datamodule.num_classes
    started = time.perf_counter()
    train_images, train_items = split_crops(datamodule.datasets["train"], k, mode, p, cfg.seed)
    val_images, val_items = split_crops(datamodule.datasets["val"], k, mode, p, cfg.seed + 1)
    crops_s = time.perf_counter() - started
    counts = {split: {n: int(sum(1 for it in items if it[1] == c))
                      for c, n in enumerate(datamodule.class_names)}
              for split, items in (("train", train_items), ("val", val_items))}
    log.info("crops from %s: train %s, val %s (%.1f s)", cfg.data.name, counts["train"],
             counts["val"], crops_s)

    train_set = CropDataset(train_images, train_items, p["crop_size"], jitter=p["jitter"],
                            hflip=p["hflip"])
    val_set = CropDataset(val_images, val_items, p["crop_size"])
    sampler = BalancedSampler(train_set.labels, seed=cfg.seed)
    if len(sampler) < p["batch_size"]:
        raise DataError(f"only {len(sampler)} balanced training crops per pass, fewer than "
                        f"pretrain.batch_size={p['batch_size']}: lower it")
    loaders = CropLoaders(
        DataLoader(train_set, batch_size=p["batch_size"], sampler=sampler, drop_last=True),
        DataLoader(val_set, batch_size=p["eval_batch_size"], shuffle=False))

    module = CropClassifierModule(width=p["width"], num_classes=k,
                                  class_names=list(datamodule.class_names),
                                  optim=optim, dropout=p["dropout"],
                                  fc_init=p["fc_init"], batch_norm=p["batch_norm"],
                                  fc_channels=p["fc_channels"])
    recorder = RunRecord(output_dir, {
        "task": "pretrain",
        "model": "vgg16_classifier",
        "data": cfg.data.name,
        "output_dir": str(output_dir),
        "parameters": parameter_counts(module.net),
        "pretrain": {**p, "preprocess": mode, "crops": counts, "crops_s": round(crops_s, 3)},
        "config": to_plain(cfg),
    })
    # The segmentation callbacks do not fit a classifier: the checkpoints watch val/mean_iou,
    # which it does not log, and the task saves its one product itself (below); the wandb masks
    # need segmentation scores. They are skipped here rather than by the experiment's callbacks
    # list, because `model=vgg16_classifier` alone, with the default callbacks, also lands here.
    trainer = build_trainer(
        cfg, callbacks=[recorder], enable_checkpointing=False, **schedule,
        skip={ModelCheckpoint: f"pretrain: the classifier is saved as {p['save_as']}",
              WandbPredictions: "pretrain: a classifier predicts no masks"},
    )
    fit_and_validate(trainer, module, loaders, recorder)
    path = output_dir / p["save_as"]
    if p["batch_norm"]:  # eval-mode BN folded into the convs: the plain vgg16 layout
        state = folded_state_dict(module.net.features, module.net.classifier)
    else:
        state = {key: v.detach().cpu().contiguous() for key, v in module.net.state_dict().items()}
    if one_cell:  # only each fc6 filter's tap sum was learnt: put it on the centre tap
        state = centre_fc6(state)
        log.info("pretrain: crops of %d px leave pool5 one cell; fc6 saved as its centre tap "
                 "(fcnlab.models.fold.centre_fc6)", p["crop_size"])
    torch.save(state, path)
    sha = file_sha256(path)
    classifier = {"path": str(path), "sha256": sha, "layout": "torchvision",
                  "width": p["width"], "num_classes": k, "class_names": list(module.class_names),
                  "crop_size": p["crop_size"], "preprocess": mode,
                  "batch_norm_folded": p["batch_norm"],
                  "fc6": "centre_tap" if one_cell else "as_trained"}
    Path(str(path) + SIDECAR_SUFFIX).write_text(json.dumps(classifier, indent=2) + "\n")
    recorder.save(status="finished", iterations=trainer.global_step, classifier=classifier)
    if trainer.global_rank == 0:
        e = recorder.last("val")
        print(f"\nvgg16_classifier (width {p['width']:g}) on {cfg.data.name} crops at iteration "
              f"{trainer.global_step}: val accuracy {100 * e['accuracy']:.2f}, mean class "
              f"accuracy {100 * e['mean_class_accuracy']:.2f} ({e['crops']} crops)")
        print(f"weights:    {path}\nsha256:     {sha}\nresults:    {output_dir / 'results.json'}")
        print(f"use it:     python train.py model=fcn32s_fixed model.pretrained={path}")
    return recorder.record
