"""The BF (boundary F1) score of SegNet's Table 3, by default exactly as the authors' script.

Definition (Csurka et al. 2013; docs/reference.md §5), as SegNet-Tutorial
``Scripts/computeBFmeasure.m`` computes it: for each image and each class n of 0..K-1 (void is
never a class: the script loops over its data's labels 1..numClasses, unlabelled 0 not among
them; its nearest-neighbour resize of the prediction to 360 x 480 has no counterpart here, the
prediction already has the label map's size),

1. draw the boundary maps of ``gt == n`` and ``pred == n`` with BSDS ``seg2bdry(., 'imageSize')``
   on the raw maps: ground-truth void pixels are simply "not n" in ``gt == n``, and the
   prediction is scored everywhere, its void pixels included (:mod:`fcnlab.metrics.contours`);
2. pair them with ``correspondPixels(pred_bmap, gt_bmap, 0.0075)``: one-to-one, d <= theta =
   0.0075 x image diagonal (4.5 px at 360 x 480) (:mod:`fcnlab.metrics.matching`);
3. P = pairs / |B_pred|, R = pairs / |B_gt| (0 for an empty map), F1 = 2PR / (P + R), 0 when
   P + R = 0; the class counts when either map is non-empty (a class only predicted: F1 0);
4. image BF = mean F1 over its counted classes, 0 when it counts none;
5. dataset BF = sum of image BFs / **all** images.

Each step is an option (``OPTIONS``), ``PRESETS`` names two full sets: ``segnet_script`` (the
steps above, the default) and ``fcnlab_v1`` (this project's earlier rule: inner 4-neighbour
boundaries with void as a neighbour, prediction masked with the GT's void, within-tolerance
matching, images counting no class skipped), to reproduce numbers computed with it. The old rule
scores a prediction that overflows a void band as perfect: a box with a 3-px void band around it,
predicted 3 px too large, gives 1.0 under ``fcnlab_v1`` and 0.5 under the script
(tests/metrics/test_boundary_script.py). Options, cost and ``metrics.boundary.every`` (BF only at
the budgets) in docs/metrics.md ("BF").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from fcnlab.metrics.contours import BITS, DRAWING, bit_counts, class_bits, draw
from fcnlab.metrics.matching import one_to_one_counts, tolerance_px, within_tolerance_hits

OPTIONS: dict[str, dict[str, str]] = {
    "draw": DRAWING,
    "void": {
        "raw": "score the prediction as it is, on ground-truth void pixels too (the script)",
        "mask_pred": "make the prediction void where the ground truth is (fcnlab_v1)",
    },
    "matching": {
        "one_to_one": "optimal one-to-one pairing with correspondPixels' costs (the script); "
        "CPU / SciPy",
        "within_tolerance": "a pixel is matched when the other map has any same-class boundary "
        "pixel within theta (MATLAB bfscore and most ports; fcnlab_v1)",
    },
    "classes": {
        "gt_or_pred": "count a class whose GT or predicted boundary is non-empty (the script)",
        "gt": "count only classes present in the ground truth (and with a non-empty boundary)",
    },
    "images": {
        "all": "divide the sum of image BFs by all images; an image counting no class adds 0 "
        "(the script)",
        "counted": "average over the images that count a class (fcnlab_v1)",
    },
}

PRESETS: dict[str, dict[str, str]] = {
    "segnet_script": {"draw": "seg2bdry", "void": "raw", "matching": "one_to_one",
                      "classes": "gt_or_pred", "images": "all"},
    "fcnlab_v1": {"draw": "inner4_void", "void": "mask_pred", "matching": "within_tolerance",
                  "classes": "gt_or_pred", "images": "counted"},
}
DEFAULT_PRESET = "segnet_script"
_VOID = -1  # internal label of ground-truth void pixels (and of masked predictions)


def resolve_options(preset: str | None = DEFAULT_PRESET, **options: str | None) -> dict[str, str]:
    """The five rule options: the preset's values, overridden by every option not None."""
    preset = DEFAULT_PRESET if preset is None else preset
    if preset not in PRESETS:
        raise ValueError(f"BF option preset={preset!r} is not one of {sorted(PRESETS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"BF options {unknown} do not exist; the options are {sorted(OPTIONS)}")
    out = dict(PRESETS[preset])
    for name, value in options.items():
        if value is None:
            continue
        if value not in OPTIONS[name]:
            raise ValueError(
                f"BF option {name}={value!r} is not one of {sorted(OPTIONS[name])}")
        out[name] = value
    return out


def boundary_f1_stats(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    tolerance: float = 0.0075,
    preset: str | None = DEFAULT_PRESET,
    **options: str | None,
) -> dict[str, Tensor]:
    """Per-image, per-class boundary counts and scores of a batch (rules in the module docstring).

    ``preds`` labels N x H x W (or logits N x K x H x W, argmax over dim 1), ``target`` N x H x W;
    options as :func:`resolve_options`. Returns float64 / bool tensors of shape N x K: ``n_pred``,
    ``n_gt`` (boundary pixels), ``matched_pred``, ``matched_gt``, ``precision``, ``recall``,
    ``f1``, ``counted``; and ``bf`` (N,): the mean F1 over counted classes, NaN for an image that
    counts none (the ``images`` option decides what such an image adds to the dataset mean).
    """
    opts = resolve_options(preset, **options)
    k = num_classes
    if target.ndim == 2:  # one image: H x W labels or K x H x W logits
        preds, target = preds.unsqueeze(0), target.unsqueeze(0)
    if preds.ndim == target.ndim + 1:
        preds = preds.argmax(dim=1)
    if preds.shape != target.shape or target.ndim != 3:
        raise ValueError(
            f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must both be N x H x W"
        )
    preds, target = preds.long(), target.long()
    void = (target == ignore_index) if ignore_index is not None else torch.zeros_like(
        target, dtype=torch.bool)
    for name, x in (("target", target), ("preds", preds)):
        bad = ((x < 0) | (x >= k)) & ~void  # predictions on void pixels are not checked
        if bool(bad.any()):
            raise ValueError(
                f"{name} has values {x[bad].unique().tolist()} outside the class range "
                f"[0, {k - 1}] (ignore_index={ignore_index})"
            )
    target = target.masked_fill(void, _VOID)
    if opts["void"] == "mask_pred":
        preds = preds.masked_fill(void, _VOID)
    theta = tolerance_px(target.shape[-2], target.shape[-1], tolerance)
    # classes in groups of BITS, one bit field per group (all of CamVid's 11, VOC's 21 in one)
    parts = [_group_counts(preds, target, lo, min(lo + BITS, k), theta, opts)
             for lo in range(0, k, BITS)]
    in_gt, n_gt, n_pred, matched_pred, matched_gt = (
        torch.cat([p[j] for p in parts], dim=1) for j in range(5))

    precision = torch.where(n_pred > 0, matched_pred / n_pred.clamp(min=1), 0.0)
    recall = torch.where(n_gt > 0, matched_gt / n_gt.clamp(min=1), 0.0)
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), 0.0)
    # The script counts a class when either boundary map is non-empty. Under both drawings a
    # non-empty map implies the class is present in that map, so "gt_or_pred" needs no presence
    # test (fcnlab_v1's "present and a non-empty boundary" is the same set); "gt" adds one.
    counted = (n_pred > 0) | (n_gt > 0)
    if opts["classes"] == "gt":
        counted &= in_gt
    bf = (f1 * counted).sum(1) / counted.sum(1)  # 0/0 -> NaN: image counts no class
    return {"n_pred": n_pred, "n_gt": n_gt, "matched_pred": matched_pred,
            "matched_gt": matched_gt, "precision": precision, "recall": recall, "f1": f1,
            "counted": counted, "bf": bf}


def _group_counts(preds: Tensor, target: Tensor, lo: int, hi: int, theta: float,
                  opts: dict) -> tuple:
    """GT presence, boundary sizes and matched pixels (N x (hi - lo) each) of classes lo..hi-1."""
    n = hi - lo
    f_gt, f_pred = class_bits(target, lo, hi), class_bits(preds, lo, hi)
    b_gt, b_pred = draw(f_gt, opts["draw"]), draw(f_pred, opts["draw"])
    if opts["matching"] == "within_tolerance":
        hit_p, hit_g = within_tolerance_hits(b_pred, b_gt, theta)
        matched_pred, matched_gt = bit_counts(hit_p, n), bit_counts(hit_g, n)
    else:  # CPU, SciPy: one assignment problem per image and class
        bp, bg = b_pred.cpu().numpy(), b_gt.cpu().numpy()
        pairs = np.stack([one_to_one_counts(bp[i], bg[i], n, theta) for i in range(len(bp))])
        matched_pred = matched_gt = torch.from_numpy(pairs).to(target.device)
    return (bit_counts(f_gt, n) > 0, bit_counts(b_gt, n).double(), bit_counts(b_pred, n).double(),
            matched_pred.double(), matched_gt.double())


def boundary_f1_image(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
    tolerance: float = 0.0075,
    preset: str | None = DEFAULT_PRESET,
    **options: str | None,
) -> float | None:
    """BF of one image (H x W label arrays); None when the image counts no class (it then adds 0
    to the dataset mean under ``images="all"`` and nothing under ``"counted"``).

    The same code path as :class:`BoundaryF1` (:func:`boundary_f1_stats` on a batch of one).
    """
    bf = boundary_f1_stats(
        torch.as_tensor(np.asarray(pred)).unsqueeze(0),
        torch.as_tensor(np.asarray(target)).unsqueeze(0),
        num_classes, ignore_index, tolerance, preset, **options,
    )["bf"][0]
    return None if bool(torch.isnan(bf)) else float(bf)


class BoundaryF1(Metric):
    """Dataset BF score: the sum of per-image BFs over the images the ``images`` option counts.

    States ``sum_f1`` (float64, sum of per-image BF) and ``n_images`` (int64, images divided by),
    both ``dist_reduce_fx="sum"``, so the score syncs across processes (DDP equals one process)
    and merges with ``merge_state``. ``compute()`` returns a float64 scalar in [0, 1], NaN before
    any image. Options: ``tolerance`` (a fraction of each image's diagonal), ``preset`` (a key of
    ``PRESETS``, default ``segnet_script``) and the rule options of ``OPTIONS`` (``draw``,
    ``void``, ``matching``, ``classes``, ``images``), each overriding the preset when not None.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    sum_f1: Tensor
    n_images: Tensor

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        tolerance: float = 0.0075,
        preset: str | None = DEFAULT_PRESET,
        draw: str | None = None,
        void: str | None = None,
        matching: str | None = None,
        classes: str | None = None,
        images: str | None = None,
        **kwargs,
    ) -> None:
        self.options = resolve_options(preset, draw=draw, void=void, matching=matching,
                                       classes=classes, images=images)
        if not tolerance >= 0:
            raise ValueError(f"BF option tolerance={tolerance!r} must be >= 0 (a fraction of "
                             f"the image diagonal)")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.tolerance = tolerance
        self.add_state("sum_f1", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: ``preds`` labels N x H x W or logits N x K x H x W; ``target`` N x H x W."""
        bf = boundary_f1_stats(preds, target, self.num_classes, self.ignore_index,
                               self.tolerance, **self.options)["bf"]
        if self.options["images"] == "all":  # the script: an image counting no class adds 0
            self.sum_f1 += bf.nan_to_num(0.0).sum().to(self.sum_f1)
            self.n_images += bf.numel()
        else:
            ok = ~torch.isnan(bf)
            self.sum_f1 += bf[ok].sum().to(self.sum_f1)
            self.n_images += ok.sum().to(self.n_images)

    def merge_state(self, incoming_state) -> None:
        """torchmetrics' ``merge_state``, also dropping a cached ``compute()`` result.

        torchmetrics 1.9 keeps the value cached by an earlier ``compute()`` after a merge, so
        ``compute()`` would return the pre-merge score.
        """
        super().merge_state(incoming_state)
        self._computed = None

    def compute(self) -> Tensor:
        """Mean per-image BF (NaN when no image was added)."""
        return self.sum_f1 / self.n_images
