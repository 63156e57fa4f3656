"""Data order that survives a restart, and evaluation shards that never duplicate a sample.

Training: the order of epoch ``e`` is a permutation drawn from its own generator seeded with
``(seed, e)``, so it depends on nothing else (not the global RNG, not the number of workers).
Augmentation draws from a seed per (seed, epoch, sample), handed to the dataset with the index,
so it resumes exactly too and does not depend on the number of workers. The loader counts the
batches it has handed out; Lightning saves that count in every checkpoint
(the ``state_dict`` / ``load_state_dict`` protocol of a stateful loader) and a resumed run starts
the interrupted epoch at the next batch. Lightning does not prefetch from a loader whose length
is known, so "handed out" is "consumed".

Evaluation under DDP: Lightning's default distributed sampler pads the split with repeated
samples so every process gets the same count, and those repeats would be counted twice in the
confusion matrix. :class:`ShardSampler` gives process r the samples r, r + n, r + 2n, … and
nothing more, so the summed confusion matrix is the one-process one (docs/reference.md §5).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler[int]):
    """Shuffled (or sequential) indices per epoch, this process's shard, from a start batch."""

    def __init__(self, size: int, *, seed: int, batch_size: int, shuffle: bool = True,
                 batches_per_step: int = 1):
        self.size, self.seed, self.batch_size, self.shuffle = size, seed, batch_size, shuffle
        self.batches_per_step = batches_per_step
        self.epoch = 0
        self.start_batch = 0

    def _shard(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        rank, world = _rank_world()
        # Equal whole batches on every process (training drops the remainder, as drop_last does).
        per_rank = (self.size // world) // self.batch_size * self.batch_size
        shard = order[rank::world][:per_rank]
        step = self.batch_size * self.batches_per_step
        if self.batches_per_step > 1 and shard and len(shard) % step:
            # Gradients accumulated over k batches (Caffe's iter_size): Lightning steps the
            # optimizer at the end of an epoch even if fewer than k batches were accumulated, so
            # the epoch is made a whole number of steps by continuing from the start of its own
            # order, as Caffe's data layer simply wraps around (it has no epochs).
            shard = [shard[i % len(shard)] for i in range(-(-len(shard) // step) * step)]
        return shard

    def sample_seed(self, index: int) -> int:
        """The augmentation seed of sample ``index`` in this epoch: a function of (seed, epoch,
        index) only, so augmentation resumes exactly and does not depend on the workers."""
        return (self.seed * 1_000_003 + self.epoch * 7_919 + index * 104_729) % 2**32

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # (index, augmentation seed) pairs; SegmentationDataset accepts both forms.
        shard = self._shard()
        for i in shard[self.start_batch * self.batch_size:]:
            yield i, self.sample_seed(i)

    def __len__(self) -> int:
        # The whole epoch, also when resuming mid-way: Lightning restores how many batches of
        # it were done and stops the epoch at this length.
        return len(self._shard())


class ResumableLoader(DataLoader):
    """The training loader: :class:`EpochSampler` order and a resumable position."""

    def __init__(self, dataset, *, batch_size: int, seed: int, shuffle: bool = True,
                 batches_per_step: int = 1, **kwargs):
        self.epoch_sampler = EpochSampler(len(dataset), seed=seed, batch_size=batch_size,
                                          shuffle=shuffle, batches_per_step=batches_per_step)
        # Its own generator: worker seeds are drawn from it, never from the global RNG, so
        # starting an iterator does not shift the dropout masks of the training step.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_size=batch_size, sampler=self.epoch_sampler,
                         drop_last=True, **kwargs)
        self._handed_out = 0

    def __iter__(self):
        sampler = self.epoch_sampler
        if self._handed_out >= len(self):
            # The previous epoch was used up (Lightning stops after len(self) batches without
            # exhausting the iterator, so this is where an epoch ends): the next one starts.
            sampler.epoch += 1
            sampler.start_batch = 0
        self._handed_out = sampler.start_batch
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def __len__(self) -> int:
        return len(self.epoch_sampler) // self.batch_size

    def state_dict(self) -> dict:
        return {"epoch": self.epoch_sampler.epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_sampler.epoch = int(state["epoch"])
        self.epoch_sampler.start_batch = int(state["batches"])
        self._handed_out = self.epoch_sampler.start_batch


class ShardSampler(Sampler[int]):
    """Evaluation indices of this process: r, r + n, r + 2n, … (no padding, no repeats)."""

    def __init__(self, size: int):
        self.size = size

    def __iter__(self) -> Iterator[int]:
        rank, world = _rank_world()
        return iter(range(rank, self.size, world))

    def __len__(self) -> int:
        rank, world = _rank_world()
        return len(range(rank, self.size, world))
