"""BF the authors' way (the default): hand-worked toy masks, BSDS seg2bdry's exact pixel pattern,
and an independent NumPy port of SegNet-Tutorial ``Scripts/computeBFmeasure.m``
(docs/reference.md §5) compared with the metric on random maps.

The script, per image and class n: ``seg2bdry(gt == n)`` / ``seg2bdry(pred == n)`` on the raw
maps, ``correspondPixels(pred, gt, 0.0075)``, a class counts when either map is non-empty, image BF
= mean F1 over counted classes (0 when none), result = sum over images / all images.
"""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.optimize import linear_sum_assignment

from fcnlab.metrics import matching
from fcnlab.metrics.boundary import BoundaryF1, boundary_f1_image, boundary_f1_stats
from fcnlab.metrics.contours import boundary_masks

VOID = 255


def tol_for(theta: float, h: int, w: int) -> float:
    """The ``tolerance`` (fraction of the diagonal) that gives theta pixels on an h x w image."""
    return theta / math.hypot(h, w)


# --------------------------------------------------------------------------- the NumPy port
def port_seg2bdry(seg: np.ndarray) -> np.ndarray:
    """BSDS seg2bdry(seg, 'imageSize'), statement by statement (MATLAB 1-based -> 0-based)."""
    tx, ty = seg.shape
    bdry = np.zeros((2 * tx + 1, 2 * ty + 1), dtype=bool)
    edgels_v = np.zeros((tx, ty), dtype=bool)
    edgels_v[:-1, :] = seg[:-1, :] != seg[1:, :]
    edgels_h = np.zeros((tx, ty), dtype=bool)
    edgels_h[:, :-1] = seg[:, :-1] != seg[:, 1:]
    bdry[2::2, 1::2] = edgels_v  # bdry(3:2:end, 2:2:end)
    bdry[1::2, 2::2] = edgels_h  # bdry(2:2:end, 3:2:end)
    bdry[2:-1:2, 2:-1:2] = (edgels_h[:-1, :-1] | edgels_h[1:, :-1]  # bdry(3:2:end-1, 3:2:end-1)
                            | edgels_v[:-1, :-1] | edgels_v[:-1, 1:])
    bdry[0, :] = bdry[1, :]
    bdry[:, 0] = bdry[:, 1]
    bdry[-1, :] = bdry[-2, :]
    bdry[:, -1] = bdry[:, -2]
    return bdry[2::2, 2::2]  # 'imageSize': bdry(3:2:end, 3:2:end)


def port_correspond(bp: np.ndarray, bg: np.ndarray, theta: float) -> int:
    """correspondPixels' problem solved densely: pairs within theta cost rint(100 d), every pixel
    left unmatched ceil(100 * 100 theta); complete outlier connections (Hungarian, SciPy)."""
    p, g = np.argwhere(bp).astype(float), np.argwhere(bg).astype(float)
    n1, n2 = len(p), len(g)
    if n1 == 0 or n2 == 0:
        return 0
    d = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    big = 10**12
    ow = math.ceil(100 * theta * 100)
    cost = np.zeros((n1 + n2, n2 + n1))
    cost[:n1, :n2] = np.where(d <= theta + 1e-9, np.rint(d * 100), big)
    cost[:n1, n2:] = np.where(np.eye(n1, dtype=bool), ow, big)
    cost[n1:, :n2] = np.where(np.eye(n2, dtype=bool), ow, big)
    rows, cols = linear_sum_assignment(cost)
    return int(((rows < n1) & (cols < n2) & (cost[rows, cols] < big)).sum())


def port_script(preds, gts, k, tolerance, matching_rule="one_to_one"):
    """computeBFmeasure.m with loops over images and classes; per-class stats and the result."""
    n_img = len(gts)
    stats = []
    f1 = np.zeros((n_img, k))
    classcount = np.zeros((n_img, k))
    for i in range(n_img):
        gim, pim = gts[i], preds[i]
        theta = tolerance * math.hypot(*gim.shape)
        for n in range(k):
            bg, bp = port_seg2bdry(gim == n), port_seg2bdry(pim == n)
            if matching_rule == "one_to_one":
                cnt_p = cnt_r = port_correspond(bp, bg, theta)
            else:  # any pixel of the other map within theta
                p, g = np.argwhere(bp), np.argwhere(bg)
                d = np.sqrt(((p[:, None] - g[None]) ** 2).sum(-1)) if len(p) and len(g) else None
                cnt_p = int((d.min(1) <= theta + 1e-9).sum()) if d is not None else 0
                cnt_r = int((d.min(0) <= theta + 1e-9).sum()) if d is not None else 0
            recall = precision = 0.0
            if bg.sum() > 0:
                classcount[i, n] = 1
                recall = cnt_r / bg.sum()
            if bp.sum() > 0:
                classcount[i, n] = 1
                precision = cnt_p / bp.sum()
            if precision + recall > 0:
                f1[i, n] = 2 * precision * recall / (precision + recall)
            stats.append((cnt_p, cnt_r, int(bp.sum()), int(bg.sum()), bool(classcount[i, n])))
    avg = 0.0
    for i in range(n_img):
        if classcount[i].sum() > 0:
            avg += f1[i].sum() / classcount[i].sum()
    return stats, avg / n_img


# --------------------------------------------------------------------------- seg2bdry's pixels
SEG2BDRY_CASES = [
    # a 2 x 2 square inside: a closed 3 x 3 ring, half a pixel up-left of the border
    ([[0, 0, 0, 0, 0],
      [0, 1, 1, 0, 0],
      [0, 1, 1, 0, 0],
      [0, 0, 0, 0, 0]],
     [[1, 1, 1, 0, 0],
      [1, 0, 1, 0, 0],
      [1, 1, 1, 0, 0],
      [0, 0, 0, 0, 0]]),
    # touching the bottom and right edges: last row = horizontal pairs, last column = vertical
    # pairs, the bottom-right pixel never
    ([[0, 0, 0, 0],
      [0, 0, 1, 1],
      [0, 1, 1, 1]],
     [[0, 1, 1, 1],
      [1, 1, 0, 0],
      [1, 0, 0, 0]]),
]


@pytest.mark.parametrize("mask,expected", SEG2BDRY_CASES)
def test_seg2bdry_pixels_by_hand(mask, expected):
    mask, expected = np.array(mask), np.array(expected, dtype=bool)
    np.testing.assert_array_equal(port_seg2bdry(mask == 1), expected)
    for cls in (0, 1):  # a mask and its complement have the same boundary
        ours = boundary_masks(torch.from_numpy(mask)[None], 2, "seg2bdry")[0, cls].numpy()
        np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("h,w", [(1, 7), (6, 1), (2, 2), (9, 13)])
def test_seg2bdry_matches_the_port(h, w):
    rng = np.random.default_rng(h * 100 + w)
    labels = rng.integers(-1, 5, (3, h, w))  # -1: void, in no class
    ours = boundary_masks(torch.from_numpy(labels), 5, "seg2bdry").numpy()
    for i in range(3):
        for c in range(5):
            np.testing.assert_array_equal(ours[i, c], port_seg2bdry(labels[i] == c))


# --------------------------------------------------------------------------- hand-worked BF
def void_band():
    """30 x 30: class-1 box rows/cols 10..19, a 3-px void band around it (7..22), background 0;
    the prediction paints the box 3 px too large (7..22), over the void band."""
    gt = np.zeros((30, 30), dtype=np.int64)
    gt[7:23, 7:23] = VOID
    gt[10:20, 10:20] = 1
    pred = np.zeros_like(gt)
    pred[7:23, 7:23] = 1
    return pred, gt


TOL_30 = tol_for(1.0, 30, 30)  # theta = 1 px


def test_void_band_overflow_scores_half_not_one():
    # Default (the script), theta = 1 px. Class 1: GT box 10..19 -> seg2bdry ring on rows/cols
    # 9..19 (11 x 11 perimeter, 40 px); predicted box 7..22 -> ring 6..22 (64 px); 3 px apart:
    # no pair, F1 0. Class 0: gt == 0 is everything outside 7..22 (void is not 0) -> ring 6..22
    # (64 px), the same as pred == 0's: 64 pairs, F1 1. BF = (0 + 1) / 2 = 0.5.
    pred, gt = void_band()
    s = boundary_f1_stats(torch.from_numpy(pred), torch.from_numpy(gt), 2, tolerance=TOL_30)
    assert s["n_gt"][0].tolist() == [64, 40] and s["n_pred"][0].tolist() == [64, 64]
    assert s["matched_pred"][0].tolist() == [64, 0]
    assert boundary_f1_image(pred, gt, 2, tolerance=TOL_30) == 0.5
    # fcnlab_v1 masks the prediction with the void band first, then both maps are identical: 1.0
    assert boundary_f1_image(pred, gt, 2, tolerance=TOL_30, preset="fcnlab_v1") == 1.0
    # it is the masking that hides the error: raw void with the old drawing also gives 0.5
    assert boundary_f1_image(pred, gt, 2, tolerance=TOL_30, preset="fcnlab_v1",
                             void="raw") == 0.5


def test_class_only_predicted_scores_zero_and_counts():
    # 20 x 20, theta 1.5 px. GT: class 0 cols 0..9, class 1 cols 10..19: both seg2bdry maps are
    # col 9 (20 px, the last row's horizontal pair included). The prediction adds a 3 x 3 class-2
    # blob at rows/cols 2..4: ring rows/cols 1..4 (12 px) for class 2 and again for class 0.
    # Class 0: P = 20/32, R = 1, F1 = 10/13. Class 1: F1 1. Class 2: no GT boundary, F1 0 but
    # counted. BF = (10/13 + 1 + 0) / 3 = 23/39; with classes="gt": (10/13 + 1) / 2 = 23/26.
    gt = np.zeros((20, 20), dtype=np.int64)
    gt[:, 10:] = 1
    pred = gt.copy()
    pred[2:5, 2:5] = 2
    tol = tol_for(1.5, 20, 20)
    s = boundary_f1_stats(torch.from_numpy(pred), torch.from_numpy(gt), 3, tolerance=tol)
    assert s["n_pred"][0].tolist() == [32, 20, 12] and s["n_gt"][0].tolist() == [20, 20, 0]
    assert s["f1"][0].tolist() == pytest.approx([10 / 13, 1.0, 0.0], abs=1e-12)
    assert s["counted"][0].tolist() == [True, True, True]
    assert boundary_f1_image(pred, gt, 3, tolerance=tol) == pytest.approx(23 / 39, abs=1e-12)
    assert boundary_f1_image(pred, gt, 3, tolerance=tol, classes="gt") == pytest.approx(
        23 / 26, abs=1e-12)


def test_thick_prediction_one_to_one_vs_within_tolerance():
    # 20 x 20, theta 1.5. GT class 1 = col 10 -> seg2bdry cols 9 and 10 (40 px, both classes).
    # Prediction cols 10..12 -> cols 9 and 12 (40 px). within_tolerance: pred col 9 hits, col 12
    # is 2 px from col 10: P 1/2; GT cols 9, 10 both have pred col 9 within 1 px: R 1; F1 2/3.
    # one_to_one: pred col 9's 20 pixels pair once each: P = R = 20/40, F1 1/2 (both classes).
    gt = np.zeros((20, 20), dtype=np.int64)
    gt[:, 10] = 1
    pred = gt.copy()
    pred[:, 10:13] = 1
    tol = tol_for(1.5, 20, 20)
    assert boundary_f1_image(pred, gt, 2, tolerance=tol) == pytest.approx(0.5)
    assert boundary_f1_image(pred, gt, 2, tolerance=tol,
                             matching="within_tolerance") == pytest.approx(2 / 3)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric BoundaryF1 was called before")
def test_image_counting_no_class_adds_zero_under_all():
    # One class filling the whole image in both maps has no boundary, so the image counts no
    # class although the prediction is perfect; the script still divides by it: (0.5 + 0) / 2.
    # fcnlab_v1 (images="counted") skips it: 0.5.
    pred, gt = void_band()
    flat = np.full((1, 30, 30), 1, dtype=np.int64)
    assert boundary_f1_image(flat[0], flat[0], 2) is None
    scores = {}
    for images in ("all", "counted"):
        m = BoundaryF1(2, tolerance=TOL_30, images=images)
        m.update(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
        m.update(torch.from_numpy(flat), torch.from_numpy(flat))
        scores[images] = (float(m.compute()), int(m.n_images))
    assert scores == {"all": (0.25, 2), "counted": (0.5, 1)}
    # an all-void ground truth with a one-class prediction counts no class either
    m = BoundaryF1(2)
    m.update(torch.zeros(1, 8, 8, dtype=torch.long), torch.full((1, 8, 8), VOID))
    assert float(m.compute()) == 0.0 and int(m.n_images) == 1


# ----------------------------------------------------------------------- the port on random maps
def blobby(rng, k, h, w, sigma=1.6):
    return gaussian_filter(rng.standard_normal((k, h, w)), (0, sigma, sigma)).argmax(0)


def random_batch(rng, n, k, h, w, classes=None):
    """Blob maps; a prediction that is part another blob map; void specks and a void corner."""
    ids = np.arange(k) if classes is None else np.asarray(classes)
    gts, preds = [], []
    for _ in range(n):
        gt = ids[blobby(rng, len(ids), h, w)]
        pred = np.where(rng.random((h, w)) < 0.5, ids[blobby(rng, len(ids), h, w, 1.2)], gt)
        pred = np.where(gaussian_filter(rng.standard_normal((h, w)), 2) > 0.2, pred, gt)
        gt[rng.random((h, w)) < 0.04] = VOID
        gt[:3, -5:] = VOID
        gts.append(gt)
        preds.append(pred)
    gts[-1][:] = VOID  # an image that counts no class: the prediction is one class everywhere
    preds[-1][:] = ids[0]
    return np.stack(preds), np.stack(gts)


@pytest.mark.parametrize("theta,matching_rule,k,classes", [
    (2.5, "one_to_one", 4, None),
    (1.0, "one_to_one", 4, None),
    (2.5, "within_tolerance", 4, None),
    (None, "one_to_one", 4, None),  # 0.0075 x the diagonal: 0.2 px, exact overlap only
    (1.5, "one_to_one", 70, [0, 5, 61, 62, 69]),  # classes past one 62-bit field
])
def test_matches_numpy_port_of_the_script(theta, matching_rule, k, classes):
    rng = np.random.default_rng(7 if theta is None else int(theta * 10) + k)
    h, w = 18, 22
    tol = 0.0075 if theta is None else tol_for(theta, h, w)
    preds, gts = random_batch(rng, 4, k, h, w, classes)
    metric = BoundaryF1(k, tolerance=tol, matching=matching_rule)
    metric.update(torch.from_numpy(preds[:2]), torch.from_numpy(gts[:2]))
    metric.update(torch.from_numpy(preds[2:]), torch.from_numpy(gts[2:]))
    s = boundary_f1_stats(torch.from_numpy(preds), torch.from_numpy(gts), k, tolerance=tol,
                          matching=matching_rule)
    ref_stats, ref_bf = port_script(preds, gts, k, tol, matching_rule)
    ours = list(zip(*(s[key].flatten().tolist() for key in
                      ["matched_pred", "matched_gt", "n_pred", "n_gt", "counted"])))
    assert ours == ref_stats
    assert 0 < ref_bf < 1 and int(metric.n_images) == 4
    assert float(metric.compute()) == pytest.approx(ref_bf, abs=1e-12)


def test_components_solved_alone_equal_the_whole_problem(monkeypatch):
    # The one-to-one solver splits each class's pair graph into components and counts small ones
    # by cardinality; sending every component to the weighted assignment must give the same pairs.
    rng = np.random.default_rng(3)
    preds, gts = random_batch(rng, 3, 4, 40, 48)
    tol = tol_for(3.0, 40, 48)
    args = (torch.from_numpy(preds), torch.from_numpy(gts), 4)
    fast = boundary_f1_stats(*args, tolerance=tol, matching="one_to_one")
    monkeypatch.setattr(matching, "_SMALL", 0)
    slow = boundary_f1_stats(*args, tolerance=tol, matching="one_to_one")
    assert fast["matched_pred"].sum() > 100
    assert torch.equal(fast["matched_pred"], slow["matched_pred"])


# --------------------------------------------------------------------------- processes
def test_sync_sums_states_across_fake_ranks():
    """torchmetrics' sync path with a fake all-gather for two ranks: DDP equals one process."""
    rng = np.random.default_rng(11)
    preds, gts = random_batch(rng, 4, 3, 16, 16)
    p, t = torch.from_numpy(preds), torch.from_numpy(gts)
    whole, rank0, rank1 = BoundaryF1(3, tolerance=0.1), BoundaryF1(3, tolerance=0.1), BoundaryF1(
        3, tolerance=0.1)
    whole.update(p, t)
    rank0.update(p[:1], t[:1])
    rank1.update(p[1:], t[1:])
    other = {torch.float64: rank1.sum_f1, torch.int64: rank1.n_images}
    rank0.sync(dist_sync_fn=lambda x, group=None: [x, other[x.dtype]],
               distributed_available=lambda: True)
    assert int(rank0.n_images) == int(whole.n_images) == 4
    synced = float(rank0.sum_f1 / rank0.n_images)  # compute() would try to sync again
    assert synced == pytest.approx(float(whole.compute()), abs=1e-12)
    rank0.unsync()
    assert int(rank0.n_images) == 1
