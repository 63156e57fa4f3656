"""The LightningModule: a network, the per-pixel loss, one metric per split, optimizer groups.

Everything passed to ``__init__`` is plain data (dicts of the resolved Hydra config), saved with
``save_hyperparameters`` so checkpoints load with ``torch.load(weights_only=True)`` and the network
can be rebuilt from the checkpoint alone (``eval.py ckpt_path=…``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn

from fcnlab.callbacks.budgets import BudgetCheckpoints
from fcnlab.callbacks.checkpoints import rng_state, set_rng_state
from fcnlab.config import instantiate
from fcnlab.crf import CRFConfig, crf_predict, require_crf
from fcnlab.errors import ConfigError, DataError, FcnlabError
from fcnlab.fastpath import compile_options, prepare, to_input
from fcnlab.metrics import (BoundaryF1, SegmentationScores, SplitLoss, majority_class_confmat,
                            scores_from_confmat)
from fcnlab.optim import param_groups

LOSS_REDUCTIONS = ("mean", "sum")
FAST_KEYS = ("channels_last", "compile")
BF_EVERY = ("interval", "budgets")

log = logging.getLogger(__name__)


class NonFiniteLossError(FcnlabError, FloatingPointError):
    """The training loss became NaN or infinite."""


class SegmentationModule(L.LightningModule):
    """Per-pixel classification with cross-entropy, void pixels ignored.

    Args:
        net: Hydra config (plain dict with ``_target_``) of the network.
        optim: ``{"optimizer": <partial config>, "scheduler": <partial config or None>,
            "bias_lr_mult": 2, "bias_decay_mult": 0}``.
        loss: ``{"reduction": "mean" | "sum", "ignore_index": 255}``. ``sum`` is the heavy FCN
            protocol (loss summed over pixels, tiny learning rates; docs/reference.md §3); ``mean``
            divides by the number of non-void pixels in the batch.
        num_classes, class_names: of the data the network is trained on.
        metrics: keyword arguments for :class:`SegmentationScores` (e.g. ``mean_over``).
        name: model name for records (``fcn8s`` …).
        data: the data config the run used, kept so evaluation can rebuild it.
        crf: dense-CRF parameters (:class:`fcnlab.crf.CRFConfig`) to post-process predictions when
            scoring, or None. Needs the ``crf`` extra; checked here so a run fails before training.
        fast: ``{"channels_last": bool, "compile": false | true | {torch.compile kwargs}}``
            (:mod:`fcnlab.fastpath`), or None (old checkpoints): the plain path. Neither changes
            parameter names or ``state_dict`` keys. Mixed precision is Lightning's
            ``trainer.precision``; the loss is computed in fp32 whatever the logits' dtype.
    """

    def __init__(
        self,
        net: dict,
        optim: dict,
        loss: dict,
        num_classes: int,
        class_names: list[str],
        metrics: dict | None = None,
        name: str = "",
        data: dict | None = None,
        crf: dict | None = None,
        fast: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        reduction = loss.get("reduction", "mean")
        if reduction not in LOSS_REDUCTIONS:
            raise ConfigError(f"loss.reduction: expected one of {LOSS_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.ignore_index = int(loss.get("ignore_index", 255))
        weights = loss.get("class_weights")  # resolved to K floats by the task, or None
        if weights is not None and (isinstance(weights, str) or len(weights) != num_classes):
            raise ConfigError(f"loss.class_weights: expected {num_classes} numbers, got {weights!r}")
        self.register_buffer("class_weights", None if weights is None
                             else torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.net = instantiate(net)
        # With fast.compile: wall seconds of the first training step ("train": forward, backward
        # and update) and of the first evaluation forward ("eval"), i.e. the compilation time,
        # reported apart from the run's timing (results.json: compile_s).
        self.compile_s: dict[str, float] = {}
        self.set_fast(fast)
        self.set_crf(crf)
        # The input convention, to turn network inputs back into RGB for the CRF.
        self.preprocess = ((data or {}).get("datamodule") or {}).get("preprocess", "caffe")
        metric_kwargs = dict(metrics or {})
        boundary = metric_kwargs.pop("boundary", None)  # BF score options, or None to skip it
        self.val_scores = SegmentationScores(num_classes, ignore_index=self.ignore_index,
                                             **metric_kwargs)
        self.test_scores = SegmentationScores(num_classes, ignore_index=self.ignore_index,
                                              **metric_kwargs)
        # The epoch's loss over the whole split, as the loss is defined (see _eval_loss), its two
        # sums kept as torchmetrics states so they are summed across processes like the
        # confusion matrix. Not in state_dict: checkpoints keep their keys.
        self.val_loss = SplitLoss()
        self.test_loss = SplitLoss()
        self.val_bf = self.test_bf = None
        self._bf_now = True  # set at the start of each evaluation (_bf_due)
        self.bf_every = "interval"
        if boundary is not None:
            # every: when a training run computes BF (docs/metrics.md "BF"); not a BF option
            boundary = dict(boundary)
            self.bf_every = boundary.pop("every", "interval")
            if self.bf_every not in BF_EVERY:
                raise ConfigError(f"metrics.boundary.every: expected one of {BF_EVERY}, got "
                                  f"{self.bf_every!r}")
            try:
                self.val_bf = BoundaryF1(num_classes, ignore_index=self.ignore_index, **boundary)
                self.test_bf = BoundaryF1(num_classes, ignore_index=self.ignore_index, **boundary)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"metrics.boundary: {e}") from None
        # The most recent computed scores per split, read by the run recorder.
        self.last_scores: dict[str, dict] = {}

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path,
                        metrics: dict | None = None) -> tuple[SegmentationModule, dict]:
        """``(module, checkpoint dict)`` rebuilt from a checkpoint alone (``weights_only=True``):
        how every task (evaluate, predict, export) gets a trained network back.

        ``metrics``: settings over the checkpoint's own (``eval.py metrics.boundary.preset=…``),
        e.g. to score an older run with today's BF or a new run with an older rule; the
        ``boundary`` block is merged key by key.

        The network comes back on the plain path (default layout, not compiled) whatever ``fast``
        settings the run trained with: those are about the machine, so the caller chooses again
        (:meth:`set_fast`).
        """
        path = Path(ckpt_path)
        if not path.is_file():
            raise ConfigError(f"ckpt_path: {str(path)!r} does not exist; expected a .ckpt file")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
            raise ConfigError(f"ckpt_path: {str(path)!r} is not an fcnlab Lightning checkpoint")
        hparams = {**ckpt["hyper_parameters"], "fast": None}
        given = {k: v for k, v in (metrics or {}).items() if v is not None and k != "boundary"}
        bf = {k: v for k, v in ((metrics or {}).get("boundary") or {}).items() if v is not None}
        if given or bf:  # null entries keep the checkpoint's setting
            merged = {**(hparams.get("metrics") or {}), **given}
            if bf:
                merged["boundary"] = {**(merged.get("boundary") or {}), **bf}
            hparams["metrics"] = merged
        module = cls(**hparams)
        module.load_state_dict(ckpt["state_dict"])
        return module, ckpt

    def set_crf(self, crf: dict | None) -> None:
        if crf:
            require_crf()
        self.crf = CRFConfig.from_dict(crf) if crf else None

    def set_fast(self, fast: dict | None) -> None:
        """Switch the fast paths (see ``fast`` above) on or off for this module's network."""
        fast = dict(fast or {})
        unknown = sorted(set(fast) - set(FAST_KEYS))
        if unknown:
            raise ConfigError(f"fast: unknown key(s) {unknown}; expected {list(FAST_KEYS)}")
        try:
            options = compile_options(fast.get("compile", False))
        except ValueError as e:
            raise ConfigError(f"fast.{e}") from None
        was_channels_last = getattr(self, "channels_last", False)
        self.channels_last = bool(fast.get("channels_last", False))
        self.compiled = options is not None
        self.compile_s.clear()
        if was_channels_last and not self.channels_last:
            self.net.to(memory_format=torch.contiguous_format)
        if not self.compiled:
            self.net._compiled_call_impl = None  # what nn.Module.compile() sets; None = eager
        prepare(self.net, channels_last=self.channels_last,
                compile=options if self.compiled else False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_input(x, self.channels_last)
        if not self.compiled or self.training or "eval" in self.compile_s:
            return self.net(x)
        start = time.perf_counter()
        out = self.net(x)
        self._compile_timed("eval", start, out.device)
        return out

    # The first call of a compiled net traces and compiles (per mode: training and evaluation
    # each compile once, and a new input shape recompiles). In training the backward graph
    # compiles at the first backward, so the whole first step is timed.
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.compiled and "train" not in self.compile_s:
            self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        start = getattr(self, "_step_start", None)
        if start is not None:
            self._step_start = None
            self._compile_timed("train", start, self.device)

    def _compile_timed(self, mode: str, start: float, device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.compile_s[mode] = round(time.perf_counter() - start, 3)
        what = "training step" if mode == "train" else "evaluation forward"
        log.info("torch.compile: the first %s took %.1f s (compilation)", what,
                 self.compile_s[mode])

    # ------------------------------------------------------------------ loss
    def _check_labels(self, target: torch.Tensor, ids) -> None:
        """Fail with the sample ids instead of an opaque device-side assert in the loss."""
        bad = ((target < 0) | (target >= self.num_classes)) & (target != self.ignore_index)
        if bool(bad.any()):
            values = sorted(torch.unique(target[bad]).tolist())[:8]
            raise DataError(
                f"label values {values} in batch {list(ids)} are outside 0..{self.num_classes - 1} "
                f"and not the void label {self.ignore_index}"
            )

    def _loss_terms(self, logits: torch.Tensor,
                    target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(total, norm)``: the loss summed over the batch's pixels, and what ``mean`` divides it
        by (the number of non-void pixels; with class weights, their summed weights, as PyTorch's
        weighted mean)."""
        w = self.class_weights
        logits = logits.float()  # bf16/fp16 logits under autocast: the loss is summed in fp32
        total = F.cross_entropy(logits, target, weight=w, ignore_index=self.ignore_index,
                                reduction="sum")
        valid = target != self.ignore_index
        norm = valid.sum().to(total.dtype) if w is None else w[target[valid]].sum()
        return total, norm

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total, norm = self._loss_terms(logits, target)
        if self.reduction == "sum":
            return total
        # An all-void batch contributes 0, not 0/0 = NaN.
        return total / norm.clamp_min(1e-12 if self.class_weights is not None else 1)

    def _eval_loss(self, logits: torch.Tensor, target: torch.Tensor, meter: SplitLoss) -> None:
        """Accumulate the split's loss the way ``reduction`` defines it, whatever the batching:

        * ``mean``: the loss summed over every pixel of the split / its non-void pixels (or their
          weights), not the mean of per-batch means (batches with more void would weigh more);
        * ``sum``: the loss summed over the split / its number of images, i.e. the loss of one
          image (the FCN protocol trains with batch 1, so this is the training loss's scale).

        Both are ratios of sums, so the 2-process value (each sums its shard; torchmetrics sums
        the states across processes) is the 1-process one (tests/test_module_sync.py).
        """
        total, norm = self._loss_terms(logits, target)
        if self.reduction == "sum":
            norm = torch.tensor(float(target.shape[0]), device=total.device)
        meter.update(total, norm)

    @staticmethod
    def _labels_like(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Labels on the logits' grid: nearest-neighbour subsampling when the net trains on a
        coarser map (DeepLab's ``train_on: subsampled_labels``, labels subsampled by 8)."""
        if target.shape[-2:] == logits.shape[-2:]:
            return target
        small = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")
        return small[:, 0].to(target.dtype)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image, target = batch["image"], batch["mask"]
        self._check_labels(target, batch.get("id", ()))
        logits = self(image)
        loss = self.loss(logits, self._labels_like(target, logits))
        if not bool(torch.isfinite(loss.detach())):
            # Stop at the first bad step: the checkpoints on disk still hold the last good state.
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.detach().item()}) at iteration "
                f"{self.global_step + 1}, batch of samples {list(batch.get('id', ()))}; "
                f"the last good checkpoint is kept"
            )
        # Per step, on purpose not synced across processes (no sync_dist): an all-reduce every
        # iteration would cost time for a curve that only shows progress; under DDP it is rank
        # 0's shard's loss. Epoch-level values are synced (_end_eval).
        self.log("train/loss", loss, prog_bar=True, batch_size=image.shape[0])
        return loss

    # ------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict, scores: SegmentationScores, bf: BoundaryF1 | None,
                   loss: SplitLoss) -> None:
        image, target = batch["image"], batch["mask"]
        self._check_labels(target, batch.get("id", ()))
        logits = self(image)
        self._eval_loss(logits, target, loss)
        if self.crf is None:
            pred = logits.argmax(1)
        else:
            pred = crf_predict(logits, image, preprocess=self.preprocess, config=self.crf)
        scores.update(pred, target)
        if bf is not None and self._bf_now:
            bf.update(pred, target)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_scores, self.val_bf, self.val_loss)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_scores, self.test_bf, self.test_loss)

    def _end_eval(self, scores: SegmentationScores, bf: BoundaryF1 | None, loss: SplitLoss,
                  stage: str) -> None:
        result = scores.compute()  # one confusion matrix over the whole split, synced
        scores.reset()
        headline = {k: float(result[k]) for k in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou")}
        if bf is not None and self._bf_now:
            headline["bf"] = float(bf.compute())  # per image, then the mean over images
            bf.reset()
        split_loss = loss.compute()  # the sums of every process (torchmetrics syncs on compute)
        loss.reset()
        # Every epoch-level value is logged with sync_dist=True. These are already the values of
        # the whole split on every process (their states were summed across processes above),
        # so Lightning's mean over processes leaves them as they are; without it, Lightning
        # warns, and a value computed per process would be logged as rank 0's alone
        # (https://lightning.ai/docs/pytorch/stable/extensions/logging.html, "sync_dist").
        # One all-reduce per evaluation, not per step.
        self.log(f"{stage}/loss", split_loss, sync_dist=True)
        self.log_dict({f"{stage}/{k}": v for k, v in headline.items()}, sync_dist=True)
        per_class = {
            name: (None if math.isnan(v) else v)
            for name, v in zip(self.class_names, result["iou"].tolist())
        }
        # Absent classes have no IU; dashboards get only the defined ones. Whether a class is
        # absent is read from the summed confusion matrix, so every process logs the same keys
        # (a collective sync must be entered by all processes).
        self.log_dict({f"{stage}/iou/{n}": v for n, v in per_class.items() if v is not None},
                      sync_dist=True)
        floor = scores_from_confmat(majority_class_confmat(result["confmat"]), scores.mean_over)
        self.last_scores[stage] = {
            **headline,
            "iou": per_class,
            "majority_class_mean_iou": float(floor["mean_iou"]),
            "majority_class_pixel_acc": float(floor["pixel_acc"]),
            "crf": self.crf is not None,
            "confmat": result["confmat"].to(torch.int64).tolist(),
        }

    def _bf_due(self) -> bool:
        """Whether this evaluation computes BF. ``metrics.boundary.every``: ``interval`` = every
        evaluation; ``budgets`` = in training only the evaluations at an iteration budget
        (BudgetCheckpoints' list) and at ``trainer.max_steps``, and every eval.py / test run.
        The same decision on every rank (global step and budgets are shared)."""
        trainer = self._trainer
        if self.bf_every == "interval" or trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return True
        if trainer.sanity_checking:
            return False
        step = trainer.global_step
        budgets = {b for cb in trainer.callbacks if isinstance(cb, BudgetCheckpoints)
                   for b in cb.budgets}
        return step in budgets or step == trainer.max_steps

    # Decided once per evaluation, not per batch (the step and the budgets do not change in it).
    def on_validation_epoch_start(self) -> None:
        self._bf_now = self._bf_due()

    def on_test_epoch_start(self) -> None:
        self._bf_now = self._bf_due()

    def on_validation_epoch_end(self) -> None:
        self._end_eval(self.val_scores, self.val_bf, self.val_loss, "val")

    def on_test_epoch_end(self) -> None:
        self._end_eval(self.test_scores, self.test_bf, self.test_loss, "test")

    # ------------------------------------------------------------- inference
    def predict_step(self, batch: dict | torch.Tensor, batch_idx: int,
                     dataloader_idx: int = 0) -> torch.Tensor:
        """``Trainer.predict``: N × H × W int64 labels (on this module's device) of a batch.

        ``batch`` is ``{"image": N × 3 × H × W}`` (preprocessed as the network was trained, every
        image of the batch the same size) or that tensor itself; ``{"image": None}`` (a batch whose
        files could not be read) gives an empty 0 × 0 × 0 tensor. Lightning calls it in eval mode under
        ``torch.inference_mode``, on the configured device, with its progress bar
        (https://lightning.ai/docs/pytorch/stable/deploy/production_basic.html). With ``crf``
        set the labels are the dense CRF's (:meth:`set_crf`).
        """
        image = batch.get("image") if isinstance(batch, dict) else batch
        if image is None:  # 0 labels maps, not None (which Lightning warns about)
            return torch.zeros((0, 0, 0), dtype=torch.int64, device=self.device)
        return predict_labels(self, image)

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng"] = rng_state()  # a resumed run draws the same dropout masks

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])

    # ------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        cfg = self.hparams.optim
        factory = instantiate(cfg["optimizer"])  # a functools.partial
        lr = factory.keywords.get("lr")
        if lr is None:
            raise ConfigError("optim.optimizer: expected an 'lr' value")
        groups = param_groups(
            self.net, lr, factory.keywords.get("weight_decay", 0.0),
            bias_lr_mult=cfg.get("bias_lr_mult", 2.0),
            bias_decay_mult=cfg.get("bias_decay_mult", 0.0),
        )
        optimizer = factory(groups)
        if not cfg.get("scheduler"):
            return optimizer
        scheduler = instantiate(cfg["scheduler"])(optimizer)
        # Training is counted in iterations, so the schedule steps every iteration.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def min_input_size(net) -> int:
    """The smallest H/W a network takes (DeconvNet's ``min_input_size``; 1 for the others)."""
    return int(getattr(net, "min_input_size", 1) or 1)


def predict_labels(module, x: torch.Tensor) -> torch.Tensor:
    """N × H × W int64 labels of a preprocessed N × 3 × H × W batch, for inputs of any size.

    ``module`` is a :class:`SegmentationModule` (or anything with ``net``, ``preprocess``,
    ``crf`` and a forward). A network with a minimum input size (DeconvNet: 193×193) gets a
    smaller input padded at the bottom and right with zeros of the preprocessed input (the mean
    colour in both conventions) and its labels cropped back; logits on a coarser grid (DeepLab's
    stride 8) are upsampled bilinearly to the input's size before the argmax or the CRF.
    """
    h, w = x.shape[-2:]
    lo = min_input_size(module.net)
    pad_h, pad_w = max(0, lo - h), max(0, lo - w)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
    logits = module(x)[..., :h, :w]
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
    if module.crf is not None:
        return crf_predict(logits, x[..., :h, :w], preprocess=module.preprocess,
                           config=module.crf)
    return logits.argmax(1)
