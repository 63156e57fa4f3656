"""Matching boundary pixels for the BF score: within a tolerance, or one to one.

``within_tolerance`` (MATLAB ``bfscore`` and most ports): a boundary pixel counts as matched when
the other map has a same-class boundary pixel within ``theta`` pixels; one pass over the disk of
offsets serves both directions. ``one_to_one`` (the authors' script, via BSDS
``correspondPixels``): an optimal assignment where each pixel is matched at most once, solved
exactly with SciPy; the slow, CPU-only option (about 10x the other).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

VOID = -1  # internal label of non-boundary / void pixels in a boundary label map
_EPS = 1e-9  # d^2 <= theta^2 + _EPS, so that a theta computed as an exact integer is inclusive

# correspondPixels (BSDS match.cc): integer costs = rint(100 * distance); outlier cost 100 theta.
_COST_SCALE = 100
_OUTLIER_COST = 100


def one_to_one_counts(lb_pred: np.ndarray, lb_gt: np.ndarray, theta: float,
                      num_classes: int) -> np.ndarray:
    """Pairs per class in the optimal one-to-one assignment of two boundary label maps.

    ``lb_pred``, ``lb_gt``: H x W int arrays, the class of each boundary pixel, ``-1`` elsewhere;
    only same-class pixels pair. Per class, the problem of BSDS ``correspondPixels``: minimise the
    sum over pairs of ``rint(100 d)`` plus ``ceil(100 * 100 theta)`` per unmatched pixel, pairs
    only at d <= theta. Solved exactly with SciPy's sparse LAPJVsp on left = pred pixels + one
    dummy per GT pixel, right = GT pixels + one dummy per pred pixel: pred i - GT j (cost of the
    pair), pred i - its dummy (outlier cost), GT j's dummy - GT j (outlier cost), GT j's dummy -
    pred i's dummy for every admissible pair (i, j) (cost 0, so a matched pair frees both
    dummies). Every cost gets +1 (LAPJVsp needs non-zero weights; a full matching has a fixed
    number of edges, so the optimum is unchanged). Pixels with no admissible pair are dropped
    first (unmatched in any case).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    counts = np.zeros(num_classes, dtype=np.int64)
    ys1, xs1 = np.nonzero(lb_pred >= 0)
    ys2, xs2 = np.nonzero(lb_gt >= 0)
    if len(ys1) == 0 or len(ys2) == 0:
        return counts
    c1 = lb_pred[ys1, xs1]
    h, w = lb_gt.shape
    index2 = np.full((h, w), -1, dtype=np.int64)
    index2[ys2, xs2] = np.arange(len(ys2))
    padded = np.append(lb_gt[ys2, xs2], -2)  # index -1 (no GT pixel) -> class -2, never equal
    rows, cols, costs = [], [], []
    for dy, dx in disk_offsets(theta):
        y, x = ys1 + dy, xs1 + dx
        inside = np.nonzero((y >= 0) & (y < h) & (x >= 0) & (x < w))[0]
        j = index2[y[inside], x[inside]]
        hit = padded[j] == c1[inside]
        rows.append(inside[hit])
        cols.append(j[hit])
        costs.append(np.full(int(hit.sum()), int(np.rint(math.hypot(dy, dx) * _COST_SCALE))))
    i_all, j_all = np.concatenate(rows), np.concatenate(cols)
    cost_all = np.concatenate(costs).astype(np.int64)
    ow = int(math.ceil(_OUTLIER_COST * theta * _COST_SCALE))
    edge_class = c1[i_all]
    # one assignment per class, as correspondPixels is called per class (LAPJVsp is superlinear:
    # one call on the union of the classes' graphs measured ~4x slower)
    for cls in np.unique(edge_class):
        sel = edge_class == cls
        u1, i_real = np.unique(i_all[sel], return_inverse=True)
        u2, j_real = np.unique(j_all[sel], return_inverse=True)
        n1, n2 = len(u1), len(u2)
        a1, a2 = np.arange(n1), np.arange(n2)
        r = np.concatenate([i_real, a1, n1 + a2, n1 + j_real])
        c = np.concatenate([j_real, n2 + a1, a2, n2 + i_real])
        v = np.concatenate(
            [cost_all[sel], np.full(n1, ow), np.full(n2, ow), np.zeros(len(i_real), np.int64)]
        )
        graph = coo_matrix((v + 1, (r, c)), shape=(n1 + n2, n1 + n2)).tocsr()
        left, right = min_weight_full_bipartite_matching(graph)
        counts[cls] = int(((left < n1) & (right < n2)).sum())
    return counts


def one_to_one_matches(b_pred: np.ndarray, b_gt: np.ndarray, theta: float) -> int:
    """Pairs in the optimal one-to-one assignment of two binary boundary maps (H x W bool)."""
    lb = [np.where(np.asarray(b, dtype=bool), 0, -1) for b in (b_pred, b_gt)]
    return int(one_to_one_counts(lb[0], lb[1], theta, 1)[0])


def tolerance_px(height: int, width: int, tolerance: float) -> float:
    """theta in pixels: ``tolerance`` x the image diagonal (0.0075 at 360 x 480 -> 4.5 px)."""
    return float(tolerance) * math.hypot(height, width)


def disk_offsets(theta: float) -> list[tuple[int, int]]:
    """All integer offsets (dy, dx) with dy^2 + dx^2 <= theta^2: the matching neighbourhood."""
    r = int(math.floor(theta + _EPS))
    return [
        (dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if dy * dy + dx * dx <= theta * theta + _EPS
    ]


def _shifted(dy: int, dx: int, h: int, w: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices a, b of an H x W map with b[i] = the pixel at offset (dy, dx) from a[i]."""

    def one(d: int, size: int) -> tuple[slice, slice]:
        if d >= 0:
            return slice(0, size - d), slice(d, size)
        return slice(-d, size), slice(0, size + d)

    (ya, yb), (xa, xb) = one(dy, h), one(dx, w)
    return (ya, xa), (yb, xb)


def within_tolerance_hits(lb_pred: Tensor, lb_gt: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """Boundary pixels with a same-class boundary pixel of the other map within ``theta``.

    ``lb_pred``, ``lb_gt``: N x H x W boundary label maps (:func:`boundary_labels`). Returns
    bool maps (hit_pred, hit_gt). One pass over the disk's offsets serves both directions (the
    disk is symmetric): pred pixel p and GT pixel p + o match when their labels are equal.
    """
    h, w = lb_pred.shape[-2:]
    small = torch.int8 if int(max(lb_pred.max(), lb_gt.max(), 0)) < 127 else torch.int32
    a_map, b_map = lb_pred.to(small), lb_gt.to(small)
    hit_p = torch.zeros(lb_pred.shape, dtype=torch.bool, device=lb_pred.device)
    hit_g = torch.zeros_like(hit_p)
    for dy, dx in disk_offsets(theta):
        if abs(dy) >= h or abs(dx) >= w:
            continue
        a, b = _shifted(dy, dx, h, w)
        eq = a_map[(..., *a)] == b_map[(..., *b)]
        hit_p[(..., *a)] |= eq
        hit_g[(..., *b)] |= eq
    return hit_p & (lb_pred != VOID), hit_g & (lb_gt != VOID)
