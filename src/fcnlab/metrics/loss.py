"""The loss of a whole split, as one ratio of sums (the split's own scores come from one
confusion matrix, :mod:`fcnlab.metrics.scores`; its loss is likewise one sum over the split
divided by one count, not a mean of batch means)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SplitLoss(Metric):
    """``total / norm`` of sums over a whole split, both summed across processes on ``compute``.

    (torchmetrics' ``MeanMetric(nan_strategy="disable")`` would do, but in torchmetrics 1.9 that
    strategy replaces the weights by ones: ``BaseAggregator._cast_and_nan_check_input``.)
    A NaN loss stays NaN, it is not dropped.
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("norm", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor, norm: torch.Tensor) -> None:
        self.total += total.detach().float()
        self.norm += norm.detach().float()

    def compute(self) -> torch.Tensor:
        return self.total / self.norm
