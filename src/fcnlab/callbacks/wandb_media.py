"""What a wandb dashboard shows beyond the scalars: per-class IoU and prediction masks.

Used with ``logger=wandb`` (offline by default: nothing leaves the machine until ``wandb sync``).
At every evaluation it logs the per-class IoU as a table and, for a fixed set of validation
images, the image with the predicted and the true masks as wandb masks with class labels.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from fcnlab.data.transforms import denormalize


def _wandb_loggers(trainer: L.Trainer) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


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
        labels = {i: n for i, n in enumerate(names)}
        batch = self._fixed_batch(trainer)
        was_training = pl_module.training
        pl_module.eval()
        images = []
        for image, mask, sample in zip(batch["image"], batch["mask"], batch["id"]):
            pred = pl_module(image[None].to(pl_module.device)).argmax(1)[0].cpu().numpy()
            truth = mask.numpy().copy()
            truth[truth == pl_module.ignore_index] = 0  # wandb masks need class ids; void shown
            images.append(wandb.Image(
                denormalize(image, pl_module.preprocess), caption=sample,
                masks={"prediction": {"mask_data": pred.astype(np.uint8), "class_labels": labels},
                       "ground_truth": {"mask_data": truth.astype(np.uint8),
                                        "class_labels": labels}}))
        pl_module.train(was_training)
        for lg in loggers:
            lg.experiment.log({"val/iou_per_class": table, "val/predictions": images,
                               "trainer/global_step": trainer.global_step})


def finish_wandb(trainer: L.Trainer) -> None:
    """Close this job's wandb run, so the next job of a multirun starts its own."""
    for lg in _wandb_loggers(trainer):
        lg.experiment.finish()
