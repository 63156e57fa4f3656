"""What a wandb dashboard shows beyond the scalars: per-class IoU and prediction masks.

Used with ``logger=wandb`` (offline by default: nothing leaves the machine until ``wandb sync``).
At every evaluation it logs the per-class IoU as a table and, for a fixed set of validation
images, the image with the predicted and the true masks as wandb masks with class labels. Void
pixels (the loss's ``ignore_index``, 255) keep their value in the true mask and have their own
label, ``void``, so the dashboard shows them in their own colour (wandb gives each label one)
rather than as background.
"""

from __future__ import annotations

import sys

import lightning as L
import numpy as np
import torch

from fcnlab.data.transforms import denormalize


def _wandb_loggers(trainer: L.Trainer) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


VOID_NAME = "void"


def mask_layers(pred: np.ndarray, truth: np.ndarray, class_names: list[str],
                ignore_index: int = 255) -> dict:
    """The ``masks`` of a ``wandb.Image``: prediction and ground truth as uint8 class ids with
    their labels (https://docs.wandb.ai/guides/track/log/media/#segmentation-masks).

    Void keeps its value and is labelled ``void``; a class may not use its id. A void id above
    255 cannot be a uint8 mask value: such pixels are labelled void at 255 instead.
    """
    if len(class_names) > 255:
        raise ValueError(f"wandb masks are uint8: {len(class_names)} classes do not fit")
    labels = dict(enumerate(class_names))
    void = ignore_index if 0 <= ignore_index <= 255 else 255
    if void in labels:
        raise ValueError(f"ignore_index {ignore_index} is also the id of class {labels[void]!r}")
    truth = np.where(truth == ignore_index, void, truth)
    with_void = {**labels, void: VOID_NAME}
    return {"prediction": {"mask_data": pred.astype(np.uint8), "class_labels": labels},
            "ground_truth": {"mask_data": truth.astype(np.uint8), "class_labels": with_void}}


class WandbPredictions(L.Callback):
    """Log per-class IoU and ``num_images`` prediction masks to wandb at every evaluation."""

    def __init__(self, num_images: int = 4):
        self.num_images = num_images
        self._batch: dict | None = None

    def _fixed_batch(self, trainer: L.Trainer) -> dict:
        if self._batch is None:  # the first images of the split, every time the same
            dataset = trainer.datamodule.val_dataloader().dataset
            items = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
            self._batch = {"image": [it["image"] for it in items],
                           "mask": [it["mask"] for it in items],
                           "id": [it["id"] for it in items]}
        return self._batch

    @torch.no_grad()
    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        loggers = _wandb_loggers(trainer)
        scores = pl_module.last_scores.get("val")
        if trainer.sanity_checking or not loggers or scores is None or trainer.global_rank:
            return
        import wandb

        names = pl_module.class_names
        table = wandb.Table(columns=["class", "IoU"],
                            data=[[n, scores["iou"][n]] for n in names])
        batch = self._fixed_batch(trainer)
        was_training = pl_module.training
        pl_module.eval()
        images = []
        for image, mask, sample in zip(batch["image"], batch["mask"], batch["id"]):
            pred = pl_module(image[None].to(pl_module.device)).argmax(1)[0].cpu().numpy()
            images.append(wandb.Image(
                denormalize(image, pl_module.preprocess), caption=sample,
                masks=mask_layers(pred, mask.numpy(), names, pl_module.ignore_index)))
        pl_module.train(was_training)
        for lg in loggers:
            lg.experiment.log({"val/iou_per_class": table, "val/predictions": images,
                               "trainer/global_step": trainer.global_step})


def finish_wandb(trainer: L.Trainer, exit_code: int = 0) -> None:
    """Close this job's wandb run, so the next job of a multirun starts its own.

    ``exit_code`` 0 marks the run finished, anything else failed (``wandb.Run.finish``). A run
    never started (nothing logged, or a rank other than 0) is not created just to be closed.
    """
    for lg in _wandb_loggers(trainer):
        run = getattr(lg, "_experiment", None)  # WandbLogger.experiment would start one
        if run is not None and hasattr(run, "finish"):
            run.finish(exit_code=exit_code)
    wandb = sys.modules.get("wandb")  # a run started outside the loggers (wandb.init)
    if _wandb_loggers(trainer) and wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)
