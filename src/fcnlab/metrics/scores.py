"""Segmentation scores the papers' way (docs/reference.md §5).

One confusion matrix n (rows = ground truth i, columns = prediction j) is accumulated over the
whole split and summed across processes by torchmetrics; every score is reduced from it at the
end, never averaged per batch (docs/reference.md §6). With t_i = sum_j n_ij:

    pixel_acc = sum_i n_ii / sum_i t_i                  (SegNet's G)
    mean_acc  = mean_i n_ii / t_i                       (SegNet's C)
    IU_i      = n_ii / (t_i + sum_j n_ji - n_ii),  mean_iou = mean_i IU_i
    fw_iou    = sum_i t_i IU_i / sum_i t_i

Which classes the two means count is the ``mean_over`` switch (see ``MEAN_OVER``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.classification.confusion_matrix import (
    _multiclass_confusion_matrix_tensor_validation,
)

MEAN_OVER = {
    "gt_present": "classes absent from the ground truth are skipped in both means (FCN's nanmean "
    "for mean accuracy; fcnlab's default before it followed score.py for mean IU too)",
    "union_present": "mean IU skips only classes absent from both ground truth and prediction, "
    "so a class predicted but absent from the ground truth counts 0 (literally FCN's score.py "
    "nanmean of IU; also torchmetrics 1.9's macro MulticlassJaccardIndex); mean accuracy as "
    "gt_present",
    "all": "divide by the number of classes, absent classes counting 0 (SegNet's script)",
}


def _check_mean_over(mean_over: str) -> None:
    if mean_over not in MEAN_OVER:
        raise ValueError(f"mean_over must be one of {sorted(MEAN_OVER)}, got {mean_over!r}")


def scores_from_confmat(confmat: Tensor, mean_over: str = "union_present") -> dict[str, Tensor]:
    """Reduce a K x K confusion matrix (rows ground truth, columns prediction) to the §5 scores.

    Returns float64 tensors, fractions in [0, 1]: scalars ``pixel_acc``, ``mean_acc``,
    ``mean_iou``, ``fw_iou``; per-class ``acc`` (NaN where t_i = 0) and ``iou`` (NaN where the
    class is absent from both ground truth and prediction, 0 where it is only predicted); and the
    ``confmat`` itself. An empty matrix gives NaN scalars. ``mean_over`` is one of ``MEAN_OVER``;
    all three agree when every class occurs in the ground truth (seg11valid, CamVid test).
    """
    _check_mean_over(mean_over)
    n = confmat.to(torch.float64)
    tp = n.diagonal()
    gt = n.sum(1)  # t_i
    union = gt + n.sum(0) - tp
    total = gt.sum()
    acc = tp / gt  # 0/0 -> NaN for classes absent from the ground truth
    iou = tp / union  # 0/0 -> NaN only when absent from both
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=n.device)

    if mean_over == "all":
        mean_acc = acc.nan_to_num(0.0).mean()
        mean_iou = iou.nan_to_num(0.0).mean()
    else:
        present = gt > 0
        mean_acc = acc[present].mean()  # mean of an empty tensor is NaN
        mean_iou = iou[present if mean_over == "gt_present" else union > 0].mean()
    empty = total == 0
    return {
        "pixel_acc": tp.sum() / total,
        "mean_acc": torch.where(empty, nan, mean_acc),
        "mean_iou": torch.where(empty, nan, mean_iou),
        "fw_iou": (gt * iou.nan_to_num(0.0)).sum() / total,
        "acc": acc,
        "iou": iou,
        "confmat": confmat,
    }


class SegmentationScores(MulticlassConfusionMatrix):
    """Pixel acc., mean acc., mean IU, f.w. IU and per-class IU from one confusion matrix.

    Builds on torchmetrics' ``MulticlassConfusionMatrix``: its ``confmat`` state (int64, K x K,
    ``dist_reduce_fx="sum"``) is accumulated over every ``update`` of the split and summed across
    processes before ``compute``, which reduces it with :func:`scores_from_confmat`
    (docs/reference.md §5) and returns a dict, so log its entries rather than the metric object.

    ``mean_over`` picks the classes the means count:

    - ``"union_present"`` (default, as conf/train.yaml): FCN's ``score.py`` for mean IU
      (nanmean): a class predicted but absent from the ground truth counts 0, a class absent from
      both is skipped; mean accuracy skips classes absent from the ground truth.
    - ``"gt_present"``: skip classes absent from the ground truth in both means.
    - ``"all"``: SegNet's script, divide by K; absent classes count 0.

    They agree when every class occurs in the ground truth, as in seg11valid and CamVid test.
    torchmetrics 1.9's own ``MulticlassJaccardIndex(average="macro")`` gives each class absent
    from both prediction and ground truth weight 0 (whatever ``zero_division``) but counts a
    class predicted yet absent from the ground truth as 0: it equals ``"union_present"``, the
    default, and differs from ``"gt_present"``. (``segmentation.MeanIoU`` averages per sample,
    which docs/reference.md §6 warns against.)
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        mean_over: str = "union_present",
        validate_args: bool = False,
        **kwargs,
    ) -> None:
        _check_mean_over(mean_over)
        super().__init__(
            num_classes, ignore_index=ignore_index, validate_args=validate_args, **kwargs
        )
        self.mean_over = mean_over

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: ``preds`` logits N x K x H x W (argmax over dim 1) or labels N x H x W.

        Pixels whose target is ``ignore_index`` are dropped. Other targets (and label
        predictions) outside [0, K-1] raise ValueError, checked without a per-batch unique().
        """
        k = self.num_classes
        if self.validate_args:  # torchmetrics' checks, including a per-batch unique(): slow
            _multiclass_confusion_matrix_tensor_validation(preds, target, k, self.ignore_index)
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(
                f"preds {tuple(preds.shape)} and target {tuple(target.shape)} do not match"
            )
        preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            preds, target = preds[keep], target[keep]
        bad_t, bad_p = (target < 0) | (target >= k), (preds < 0) | (preds >= k)
        if bool((bad_t | bad_p).any()):
            for name, x, bad in (("target", target, bad_t), ("preds", preds, bad_p)):
                if bool(bad.any()):
                    raise ValueError(
                        f"{name} has values {x[bad].unique().tolist()} outside the class range "
                        f"[0, {k - 1}] (ignore_index={self.ignore_index})"
                    )
        # torch.bincount directly: torchmetrics' _bincount falls back, in deterministic mode, to a
        # (pixels x K^2) comparison mesh, gigabytes at segmentation sizes; bincount without weights
        # is allowed under torch.use_deterministic_algorithms.
        self.confmat += torch.bincount(target * k + preds, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        """Scores of everything accumulated so far (synced across processes by torchmetrics)."""
        return scores_from_confmat(self.confmat, self.mean_over)


def majority_class_confmat(confmat: Tensor) -> Tensor:
    """The confusion matrix of always predicting the most frequent ground-truth class.

    The floor a trained network must clear: on the embedded data that is the background.
    """
    gt = confmat.sum(1)
    out = torch.zeros_like(confmat)
    out[:, int(gt.argmax())] = gt
    return out


def format_scores_table(scores: dict, class_names: list[str] | None = None) -> str:
    """Plain-text table of the four headline scores and per-class IU, as percentages."""

    def pct(x) -> str:
        return f"{100 * float(x):6.2f}"

    iou = [float(v) for v in scores["iou"]]
    if class_names is None:
        class_names = [f"class {i}" for i in range(len(iou))]
    names = list(class_names)
    if len(names) != len(iou):
        raise ValueError(f"{len(names)} class names for {len(iou)} classes")
    width = max([12, *map(len, names)])
    rows = [
        ("pixel acc", scores["pixel_acc"]),
        ("mean acc", scores["mean_acc"]),
        ("mean IU", scores["mean_iou"]),
        ("f.w. IU", scores["fw_iou"]),
    ]
    if "bf" in scores:  # the boundary F1 score, when it was computed
        rows.append(("BF", scores["bf"]))
    lines = [f"{label:<{width}}  {pct(v)}" for label, v in rows]
    lines += ["", f"{'class':<{width}}  {'IU':>6}", "-" * (width + 8)]
    lines += [f"{name:<{width}}  {pct(v)}" for name, v in zip(names, iou)]
    return "\n".join(lines)
