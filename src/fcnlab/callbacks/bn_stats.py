"""Recompute BatchNorm statistics over the training set before evaluating (the SegNet protocol).

SegNet's benchmark (docs/reference.md §1/§3): "Before every evaluation the BN statistics were recomputed
over the training set" (the released ``compute_bn_statistics.py`` runs the training images through
the net and stores the averaged batch statistics as the test-time mean and variance). Training-time
running averages with momentum 0.1 lag behind the weights and are dominated by the last few
hundred batches; recomputing makes evaluation independent of that history.

:func:`recompute_bn_stats` does it for any ``nn.Module``; :class:`RecomputeBNStats` runs it before
each validation of a Lightning fit (``callbacks=[default,bn_recompute]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from fcnlab.errors import ConfigError
from fcnlab.progress import track

log = logging.getLogger(__name__)


def _bn_modules(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _images(batch) -> torch.Tensor:
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ConfigError(f"recompute_bn_stats: expected batches with an 'image' entry, got "
                              f"keys {sorted(batch)}")
        return batch["image"]
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ConfigError(f"recompute_bn_stats: expected dict batches with an 'image' tensor, got "
                      f"{type(batch).__name__}")


def recompute_bn_stats(net: nn.Module, loader: Iterable, *, max_batches: int | None = None,
                       device: torch.device | str | None = None,
                       progress: bool = False) -> int:
    """Replace every BatchNorm's running mean/var by their average over ``loader``'s batches.

    Each BN is reset and switched to a cumulative moving average (``momentum=None``), so after
    ``n`` batches ``running_mean`` is the plain mean of the ``n`` per-batch means and
    ``running_var`` the mean of the ``n`` per-batch *unbiased* variances (what PyTorch's running
    statistics hold; like SegNet's script, the average of batch statistics, not pooled ones).
    The net runs in training mode (BN normalises with batch statistics, as during training) but
    with every Dropout in eval mode and without gradients; momenta and each module's train/eval
    mode are restored afterwards. Returns the number of images seen (0, doing nothing, if the net
    has no BatchNorm with running statistics). ``progress``: show the pass with
    :func:`fcnlab.progress.track` (a whole training set can take minutes at paper scale).
    """
    bns = _bn_modules(net)
    if not bns:
        return 0
    if max_batches is not None and (isinstance(max_batches, bool)
                                    or not isinstance(max_batches, int) or max_batches < 1):
        raise ConfigError(f"recompute_bn_stats max_batches: expected null or an int >= 1, got "
                          f"{max_batches!r}")
    if device is None:
        first = next(iter(net.parameters()), None)
        if first is None:
            first = next(iter(net.buffers()))  # a BN with running stats has buffers
        device = first.device
    modes = {m: m.training for m in net.modules()}
    momenta = {bn: bn.momentum for bn in bns}
    seen = 0
    try:
        net.train()
        for m in net.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        total = len(loader) if hasattr(loader, "__len__") else None
        if total is not None and max_batches is not None:
            total = min(total, max_batches)
        batches = track(loader, "BatchNorm statistics", total=total, unit="batches",
                        enabled=progress)
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                images = _images(batch).to(device, non_blocking=True)
                net(images)
                seen += images.shape[0]
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return seen


class RecomputeBNStats(L.Callback):
    """Before each validation (not the sanity check), recompute BN statistics over the train set.

    The batches come from a separate, unshuffled DataLoader over the datamodule's training dataset
    (same batch size, workers and collate function; last partial batch dropped like the training
    loader, so no BN sees a batch of one), so the training loader's order and state are untouched.
    The training dataset's own transform still applies. ``max_batches`` bounds the pass (null: the
    whole training set). Under DDP every process runs the same pass, so the statistics agree.
    """

    def __init__(self, max_batches: int | None = None):
        if max_batches is not None and (isinstance(max_batches, bool)
                                        or not isinstance(max_batches, int) or max_batches < 1):
            raise ConfigError(f"callbacks.bn_recompute.max_batches: expected null or an int >= 1, "
                              f"got {max_batches!r}")
        self.max_batches = max_batches

    @staticmethod
    def loader_for(trainer: L.Trainer) -> DataLoader:
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "train_dataloader"):
            raise ConfigError("callbacks.bn_recompute needs a datamodule with a train_dataloader; "
                              "run with a data config or remove the callback")
        train = dm.train_dataloader()  # only to read dataset and settings; never iterated here
        batch_size = getattr(dm, "batch_size", None) or train.batch_size or 1
        dataset = train.dataset
        return DataLoader(dataset, batch_size=batch_size, shuffle=False,
                          drop_last=len(dataset) >= batch_size, num_workers=train.num_workers,
                          collate_fn=train.collate_fn, pin_memory=train.pin_memory)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not _bn_modules(pl_module):
            return
        plugin = getattr(trainer, "precision_plugin", None)
        context = plugin.forward_context() if plugin is not None else torch.no_grad()
        with context:
            seen = recompute_bn_stats(pl_module, self.loader_for(trainer),
                                      max_batches=self.max_batches, device=pl_module.device,
                                      progress=trainer.is_global_zero)
        log.info("recomputed BatchNorm statistics over %d training images", seen)
        # Every rank runs the same pass, so the count agrees; sync_dist keeps the epoch-level
        # rule of fcnlab.module (and Lightning's warning away) at one all-reduce per evaluation.
        pl_module.log("bn_recompute/images", float(seen), on_step=False, on_epoch=True,
                      sync_dist=True)
