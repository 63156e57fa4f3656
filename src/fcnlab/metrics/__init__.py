"""How a segmentation is scored: one confusion matrix per split (pixel accuracy, mean accuracy,
mean IU, f.w. IU) and the boundary F1 score (BF) with its pixel matching."""

from fcnlab.metrics.boundary import BoundaryF1
from fcnlab.metrics.loss import SplitLoss
from fcnlab.metrics.scores import (MEAN_OVER, SegmentationScores, format_scores_table,
                                   majority_class_confmat, scores_from_confmat)

__all__ = ["MEAN_OVER", "BoundaryF1", "SegmentationScores", "SplitLoss", "format_scores_table",
           "majority_class_confmat", "scores_from_confmat"]
