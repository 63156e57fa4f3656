"""BF under the ``fcnlab_v1`` preset (fcnlab's rule before the authors' script was followed:
inner 4-neighbour boundaries with void as a neighbour, the prediction masked with the GT's void,
within-tolerance matching, images counting no class skipped), kept so older numbers can be
reproduced; and behaviour shared by every option set. The default (the script's rules) is tested
in test_boundary_script.py."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.optimize import linear_sum_assignment

from fcnlab.metrics.boundary import (
    BoundaryF1,
    boundary_f1_image,
    boundary_f1_stats,
)
from fcnlab.metrics.matching import disk_offsets, one_to_one_matches

VOID = 255
V1 = {"preset": "fcnlab_v1"}


def tol_for(theta: float, h: int, w: int) -> float:
    """The ``tolerance`` (fraction of the diagonal) that gives theta pixels on an h x w image."""
    return theta / math.hypot(h, w)


TOL_20 = tol_for(1.5, 20, 20)  # theta = 1.5 px on 20 x 20


def square(shift: int = 0, size: int = 20) -> np.ndarray:
    """Class 1 square rows 5..12, cols 5+shift..12+shift on class 0."""
    m = np.zeros((size, size), dtype=np.int64)
    m[5:13, 5 + shift : 13 + shift] = 1
    return m


def bf(pred, target, k=2, **kw) -> float | None:
    """BF of one image under fcnlab_v1 unless ``kw`` names another preset."""
    return boundary_f1_image(np.asarray(pred), np.asarray(target), k, **{**V1, **kw})


# --------------------------------------------------------------------------- hand-worked cases
def test_identical_masks_score_one():
    gt = square()
    assert bf(gt, gt) == 1.0
    assert bf(gt, gt, tolerance=0.0) == 1.0


def test_square_shifted_by_one_is_within_tolerance():
    assert bf(square(1), square(), tolerance=TOL_20) == 1.0
    # but not at a tolerance below 1 px
    assert bf(square(1), square(), tolerance=tol_for(0.9, 20, 20)) < 1.0


def test_square_shifted_by_four_hand_counted():
    # theta = 1.5 px. Class 1 (inner ring, 28 px): of the shifted ring, top row cols 9..13 and
    # bottom row cols 9..13 are within 1.5 px of the original ring, plus (6, 9) and (11, 9) next
    # to its top/bottom rows: 12 of 28; by symmetry recall is 12/28 too. Class 0 (4-neighbour
    # ring outside the square without corners, 32 px): shifted top row cols 9..14 ((4, 14) is
    # sqrt(2) from (5, 13)), the same on the bottom, plus (5, 8) and (12, 8): 14 of 32.
    s = boundary_f1_stats(torch.from_numpy(square(4)), torch.from_numpy(square()), 2,
                          tolerance=TOL_20, **V1)
    assert s["n_pred"][0].tolist() == [32, 28] and s["n_gt"][0].tolist() == [32, 28]
    assert s["matched_pred"][0].tolist() == [14, 12]
    assert s["matched_gt"][0].tolist() == [14, 12]
    assert s["f1"][0].tolist() == pytest.approx([14 / 32, 12 / 28], abs=1e-12)
    expected = (14 / 32 + 12 / 28) / 2  # = 97/224
    assert expected == pytest.approx(97 / 224)
    assert bf(square(4), square(), tolerance=TOL_20) == pytest.approx(expected, abs=1e-12)


def test_class_only_in_prediction():
    # GT: class 0 on cols 0..9, class 1 on cols 10..19. Prediction adds a 3x3 class-2 blob at
    # rows/cols 2..4, over 5 px from the 0/1 border. Class 1: F1 1. Class 0: GT boundary col 9
    # (20 px); predicted col 9 plus the blob's 12-px ring: P = 20/32, R = 1, F1 = 10/13.
    # Class 2: no GT boundary, F1 = 0, counted only under gt_or_pred.
    gt = np.zeros((20, 20), dtype=np.int64)
    gt[:, 10:] = 1
    pred = gt.copy()
    pred[2:5, 2:5] = 2
    s = boundary_f1_stats(torch.from_numpy(pred), torch.from_numpy(gt), 3, tolerance=TOL_20, **V1)
    assert s["f1"][0].tolist() == pytest.approx([10 / 13, 1.0, 0.0], abs=1e-12)
    assert s["counted"][0].tolist() == [True, True, True]
    assert bf(pred, gt, 3, tolerance=TOL_20) == pytest.approx((10 / 13 + 1) / 3, abs=1e-12)
    assert bf(pred, gt, 3, tolerance=TOL_20, classes="gt") == pytest.approx(
        (10 / 13 + 1) / 2, abs=1e-12)
    # a class in the GT but missing from the prediction counts 0 under both
    assert bf(np.zeros_like(gt), gt, 3, classes="gt") == 0.0


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric BoundaryF1 was called before")
def test_no_counted_class_gives_none_and_is_skipped():
    flat = np.zeros((8, 9), dtype=np.int64)
    assert bf(flat, flat) is None
    m = BoundaryF1(2, **V1)
    assert math.isnan(float(m.compute()))
    m.update(torch.from_numpy(flat)[None], torch.from_numpy(flat)[None])
    assert int(m.n_images) == 0 and math.isnan(float(m.compute()))


def void_case():
    gt = np.zeros((20, 20), dtype=np.int64)
    gt[:, 10:] = 1
    full = gt.copy()
    gt[5:10, 3:7] = VOID  # inside class 0
    gt[12:16, 8:12] = VOID  # across the 0/1 border
    return gt, full


def test_void_border_is_a_boundary():
    # VOC-style labels put void along object borders, so a class/void border is a boundary.
    # Class 0: the 0/1 border (col 9, 16 rows outside the void rows 12..15), the 18 pixels around
    # the void block inside it, and 6 more around the block across the border (col 7 rows 12..15,
    # col 8 rows 11 and 16) = 40. Class 1: 16 + col 12 rows 12..15 + col 11 rows 11 and 16 = 22.
    gt, full = void_case()
    s = boundary_f1_stats(torch.from_numpy(full), torch.from_numpy(gt), 2, **V1)
    assert s["n_gt"][0].tolist() == [40, 22]
    assert s["n_pred"][0].tolist() == [40, 22]  # the prediction carries the same void
    assert bf(full, gt) == 1.0
    assert bf(1 - full, gt) == 0.0  # wrong classes along the void border match nothing


@pytest.mark.parametrize("matching", ["within_tolerance", "one_to_one"])
def test_prediction_inside_void_does_not_matter(matching):
    gt, full = void_case()
    rng = np.random.default_rng(0)
    pred = np.where(rng.random(gt.shape) < 0.1, 1 - full, full)  # some errors outside void too
    base = bf(pred, gt, tolerance=TOL_20, matching=matching)
    assert base < 1.0
    void = gt == VOID
    for fill in [np.zeros_like(gt), np.ones_like(gt), rng.integers(0, 2, gt.shape)]:
        changed = np.where(void, fill, pred)
        assert bf(changed, gt, tolerance=TOL_20, matching=matching) == base
    # without the void the prediction's void area would matter
    assert bf(np.where(void, rng.integers(0, 2, gt.shape), pred), full,
              tolerance=TOL_20, matching=matching) != base


def test_dataset_bf_is_mean_over_images_not_pixels():
    m = BoundaryF1(2, tolerance=TOL_20, **V1)
    m.update(torch.from_numpy(square(4))[None], torch.from_numpy(square())[None])  # 97/224
    small = np.zeros((10, 12), dtype=np.int64)
    small[2:5, 3:9] = 1
    m.update(torch.from_numpy(small)[None], torch.from_numpy(small)[None])  # 1.0
    assert int(m.n_images) == 2
    assert float(m.compute()) == pytest.approx((97 / 224 + 1.0) / 2, abs=1e-12)


def test_one_to_one_trades_a_match_for_distance_like_correspondpixels():
    # pred row x = 0..L-1, GT row x = 1..L, theta = 1 (outlier cost 100 theta = 100 px).
    # All L pairs shifted by one cost L px; L-1 zero-length pairs and 2 outliers cost 200 px.
    for length, expected in [(150, 150), (250, 249)]:
        a = np.zeros((3, length + 5), dtype=bool)
        b = np.zeros_like(a)
        a[1, :length] = True
        b[1, 1 : length + 1] = True
        assert one_to_one_matches(a, b, 1.0) == expected


def test_logits_equal_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 16, 18, generator=g)
    logits = torch.nn.functional.avg_pool2d(logits, 5, 1, 2)  # blobby argmax
    target = logits.argmax(1).roll(1, dims=-1)
    target[:, :3, :4] = VOID
    a, b = BoundaryF1(4), BoundaryF1(4)
    a.update(logits, target)
    b.update(logits.argmax(1), target)
    assert float(a.compute()) == float(b.compute())
    assert 0 < float(a.compute()) < 1
    # one image: K x H x W logits with an H x W target
    one = boundary_f1_stats(logits[1], target[1], 4)["bf"]
    assert float(one[0]) == float(boundary_f1_stats(logits[1:2].argmax(1), target[1:2], 4)["bf"][0])


def test_bad_inputs():
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="outside the class range"):
        boundary_f1_stats(t + 3, t, 2)
    with pytest.raises(ValueError, match="outside the class range"):
        boundary_f1_stats(t, t + 7, 2)
    boundary_f1_stats(t + 3, t + VOID, 2)  # predictions on void pixels are not checked
    with pytest.raises(ValueError, match="matching"):
        BoundaryF1(2, matching="greedy")
    with pytest.raises(ValueError, match="classes"):
        BoundaryF1(2, classes="pred")


# --------------------------------------------------------------------------- independent references
def blobby(rng, k: int, h: int, w: int, sigma: float = 2.0) -> np.ndarray:
    return gaussian_filter(rng.standard_normal((k, h, w)), (0, sigma, sigma)).argmax(0)


def random_pair(rng, k=4, h=24, w=32):
    gt = blobby(rng, k, h, w)
    pred = np.where(rng.random((h, w)) < 0.5, blobby(rng, k, h, w, 1.5), gt)
    pred = np.where(gaussian_filter(rng.standard_normal((h, w)), 2) > 0.1, pred, gt)
    gt[rng.random((h, w)) < 0.03] = VOID
    gt[:4, -6:] = VOID
    return pred, gt


def ref_boundary_coords(lab: np.ndarray, c: int) -> np.ndarray:
    """Explicit loops: class-c pixels with a 4-neighbour of another class or void (-1)."""
    h, w = lab.shape
    out = []
    for y in range(h):
        for x in range(w):
            if lab[y, x] != c:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] != c:
                    out.append((y, x))
                    break
    return np.array(out, dtype=float).reshape(-1, 2)


def ref_one_to_one(bp: np.ndarray, bg: np.ndarray, theta: float) -> int:
    """Dense assignment with complete outlier connections (correspondPixels' costs)."""
    n1, n2 = len(bp), len(bg)
    if n1 == 0 or n2 == 0:
        return 0
    d = np.sqrt(((bp[:, None, :] - bg[None, :, :]) ** 2).sum(-1))
    big = 10**12
    ow = math.ceil(100 * theta * 100)
    cost = np.zeros((n1 + n2, n2 + n1))
    cost[:n1, :n2] = np.where(d <= theta + 1e-9, np.rint(d * 100), big)
    cost[:n1, n2:] = ow
    cost[n1:, :n2] = ow
    rows, cols = linear_sum_assignment(cost)
    return int(((rows < n1) & (cols < n2) & (cost[rows, cols] < big)).sum())


def ref_stats(pred, gt, k, theta, classes, matching):
    """Per-class (matched_pred, matched_gt, n_pred, n_gt, counted) and the image BF."""
    gv = np.where(gt == VOID, -1, gt)
    pv = np.where(gt == VOID, -1, pred)
    per_class, f1s = [], []
    for c in range(k):
        bp, bg = ref_boundary_coords(pv, c), ref_boundary_coords(gv, c)
        if matching == "one_to_one":
            mp = mg = ref_one_to_one(bp, bg, theta)
        elif len(bp) and len(bg):
            d = np.sqrt(((bp[:, None, :] - bg[None, :, :]) ** 2).sum(-1))
            mp, mg = int((d.min(1) <= theta).sum()), int((d.min(0) <= theta).sum())
        else:
            mp = mg = 0
        present = (gv == c).any() or (classes == "gt_or_pred" and (pv == c).any())
        counted = bool(present and (len(bp) or len(bg)))
        p = mp / len(bp) if len(bp) else 0.0
        r = mg / len(bg) if len(bg) else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class.append((mp, mg, len(bp), len(bg), counted))
        if counted:
            f1s.append(f1)
    return per_class, (float(np.mean(f1s)) if f1s else None)


@pytest.mark.parametrize(
    "theta,classes,matching",
    [
        (2.5, "gt_or_pred", "within_tolerance"),
        (2.5, "gt", "within_tolerance"),
        (1.0, "gt_or_pred", "within_tolerance"),
        (0.3, "gt_or_pred", "within_tolerance"),  # 0.0075 x diagonal at 24 x 32: exact overlap
        (2.5, "gt_or_pred", "one_to_one"),
        (1.5, "gt", "one_to_one"),
    ],
)
def test_matches_brute_force_reference(theta, classes, matching):
    rng = np.random.default_rng(int(theta * 10) + len(classes) + len(matching))
    k, h, w = 4, 24, 32
    pairs = [random_pair(rng, k, h, w) for _ in range(3)]
    preds = torch.from_numpy(np.stack([p for p, _ in pairs]))
    targets = torch.from_numpy(np.stack([t for _, t in pairs]))
    s = boundary_f1_stats(preds, targets, k, tolerance=tol_for(theta, h, w), classes=classes,
                          matching=matching, **V1)
    metric = BoundaryF1(k, tolerance=tol_for(theta, h, w), classes=classes, matching=matching,
                        **V1)
    metric.update(preds, targets)
    ref_bfs = []
    for i, (pred, gt) in enumerate(pairs):
        per_class, ref_bf = ref_stats(pred, gt, k, theta, classes, matching)
        ours = list(zip(*(s[key][i].tolist() for key in
                          ["matched_pred", "matched_gt", "n_pred", "n_gt", "counted"])))
        assert ours == per_class
        assert ref_bf is not None and 0 < ref_bf < 1  # a real, non-trivial case
        assert float(s["bf"][i]) == pytest.approx(ref_bf, abs=1e-12)
        ref_bfs.append(ref_bf)
    assert float(metric.compute()) == pytest.approx(np.mean(ref_bfs), abs=1e-12)


def test_disk_offsets():
    assert len(disk_offsets(1.5)) == 9
    assert len(disk_offsets(1.0)) == 5
    assert len(disk_offsets(4.5)) == 69  # theta at 360 x 480
    assert len(disk_offsets(0.3)) == 1


@pytest.mark.parametrize("preset", ["segnet_script", "fcnlab_v1"])
def test_merge_state_equals_one_instance(preset):
    rng = np.random.default_rng(5)
    batches = []
    for n in (2, 1, 3):
        pairs = [random_pair(rng, 4, 20, 22) for _ in range(n)]
        batches.append(tuple(torch.from_numpy(np.stack(x)) for x in zip(*pairs)))
    whole = BoundaryF1(4, tolerance=0.08, preset=preset)
    for p, t in batches:
        whole.update(p, t)
    a, b = BoundaryF1(4, tolerance=0.08, preset=preset), BoundaryF1(4, tolerance=0.08,
                                                                    preset=preset)
    a.update(*batches[0])
    b.update(*batches[1])
    b.update(*batches[2])
    # compute() before the merge: torchmetrics 1.9 would keep this cached value after it
    assert float(a.compute()) != pytest.approx(float(whole.compute()))
    a.merge_state(b)
    assert int(a.n_images) == int(whole.n_images) == 6
    assert float(a.compute()) == pytest.approx(float(whole.compute()), abs=1e-12)
    # the states are plain sums, as dist_reduce_fx="sum" syncs them
    assert a._reductions["sum_f1"] is not None and a._reductions["n_images"] is not None
