"""Matching boundary pixels for the BF score: one to one (the authors' script), or within tolerance.

Both take boundary bit fields (bit c of a pixel = on class c's boundary;
:mod:`fcnlab.metrics.contours`) and only ever pair pixels of the same class, at Euclidean distance
d <= theta (inclusive: BSDS ``match.cc`` skips a pair only when d^2 > maxDist^2).

``one_to_one`` (the authors' script, SegNet-Tutorial ``Scripts/computeBFmeasure.m``, which calls
BSDS ``correspondPixels(pred_bmap, gt_bmap, 0.0075)``; docs/reference.md §5): the assignment
problem of BSDS ``source/correspondPixels.cc`` + ``source/match.cc`` (read in
awf/extended-berkeley-segmentation-benchmark): theta = maxDist x image diagonal, edge cost
``rint(100 d)``, each unmatched pixel costing ``ceil(100 * outlierCost * theta)`` with
outlierCost = 100, total cost minimised. ``within_tolerance`` (MATLAB ``bfscore`` and most
ports): a pixel is matched when the other map has any pixel within theta (many-to-one).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

_EPS = 1e-9  # d^2 <= theta^2 + _EPS, so that a theta computed as an exact integer is inclusive

# match.cc: its assignment solver (CSA) takes integers, so pair costs are rint(100 x distance) ...
_COST_SCALE = 100
# ... and correspondPixels.cc: outlier cost = outlierCost (default 100) x maxDist x diagonal.
_OUTLIER_COST = 100


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


# --------------------------------------------------------------------------- within tolerance
def _shift(x: Tensor, d: int, dim: int) -> Tensor:
    """``out[..., i, ...] = x[..., i + d, ...]`` along ``dim``, 0 (False) beyond the image."""
    n = x.shape[dim]
    out = torch.zeros_like(x)
    if abs(d) >= n:
        return out
    if d >= 0:
        out.narrow(dim, 0, n - d).copy_(x.narrow(dim, d, n - d))
    else:
        out.narrow(dim, -d, n + d).copy_(x.narrow(dim, 0, n + d))
    return out


def dilate_disk(b: Tensor, theta: float) -> Tensor:
    """Pixels with a set pixel of ``b`` (``... x H x W`` bool, or a bit field: per bit) within
    ``theta``.

    The disk is a stack of rows dy with half-widths w(dy), so the dilation is a horizontal one per
    half-width (built up one dx at a time) shifted by each dy: 2 w_max + 2 r + 1 shifts instead of
    one per disk offset (69 at theta = 4.5).
    """
    half: dict[int, int] = {}
    for dy, dx in disk_offsets(theta):
        half[dy] = max(half.get(dy, 0), dx)
    rows = [b]
    for w in range(1, max(half.values()) + 1):
        rows.append(rows[-1] | _shift(b, w, -1) | _shift(b, -w, -1))
    out = torch.zeros_like(b)
    for dy, w in half.items():
        out |= _shift(rows[w], dy, -2)
    return out


def within_tolerance_hits(b_pred: Tensor, b_gt: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """(pred, GT) boundary pixels with a boundary pixel of the same class in the other map
    within ``theta``: ``b_pred``, ``b_gt`` are ``... x H x W`` boundary bit fields (bit c =
    class c) or bool maps of one class, on any device."""
    return b_pred & dilate_disk(b_gt, theta), b_gt & dilate_disk(b_pred, theta)


# --------------------------------------------------------------------------- one to one
# A connected component of the within-theta pair graph whose smaller side has m pixels can always
# take one more pair while it has fewer than its maximum matching: the augmenting path adds at
# most m pairs of cost <= c_max = rint(100 theta) and frees two outliers (2 x ow). So when
# m * c_max < 2 ow (m < ~200 at any theta) the optimum has the maximum number of pairs, which a
# plain cardinality assignment finds; larger components get the weighted problem.
_SMALL = 2  # factor of ow in that bound; tests set it to 0 to send every component the long way


def _pairs(p: np.ndarray, g: np.ndarray, theta: float):
    """Pixel pairs (pred id, GT id, cost) at d <= theta between coordinate lists (n x 2)."""
    from scipy.spatial import cKDTree

    found = cKDTree(p).sparse_distance_matrix(cKDTree(g), theta + 1e-6, output_type="ndarray")
    i, j = found["i"].astype(np.int64), found["j"].astype(np.int64)
    d2 = ((p[i] - g[j]) ** 2).sum(1)
    keep = d2 <= theta * theta + _EPS  # match.cc: skipped when d^2 > maxDist^2
    i, j, d2 = i[keep], j[keep], d2[keep]
    return i, j, np.rint(np.sqrt(d2) * _COST_SCALE).astype(np.int64)


def _cardinality(i: np.ndarray, j: np.ndarray, n1: int, n2: int) -> int:
    """Size of a maximum matching of a small bipartite graph (dense 0/1 assignment); ``i``, ``j``
    its edges, nodes numbered 0..n1-1 and 0..n2-1."""
    from scipy.optimize import linear_sum_assignment

    miss = np.ones((n1, n2), dtype=np.int8)
    miss[i, j] = 0
    r, c = linear_sum_assignment(miss)
    return int((miss[r, c] == 0).sum())


def _assignment_pairs(i: np.ndarray, j: np.ndarray, cost: np.ndarray, n1: int, n2: int,
                      ow: int) -> int:
    """Pairs in the min-cost assignment of ``correspondPixels`` on one pair graph: edges ``i``,
    ``j`` (nodes 0..n1-1 pred, 0..n2-1 GT, each in at least one pair) with their costs.

    Pixels in no pair are unmatched in any case and left out (as match.cc's "matchable" step).
    Left nodes = pred pixels + one dummy per GT pixel; right = GT pixels + one dummy per pred
    pixel. Edges: the pairs (their cost); pred i - its dummy and GT j's dummy - GT j (outlier cost
    ow each); GT j's dummy - pred i's dummy for every pair (i, j) (cost 0, so a pair frees both
    dummies). A full matching always exists and every one has the same number of edges, so adding
    1 to all costs (SciPy's LAPJVsp wants non-zero weights) leaves the optimum unchanged. This is
    match.cc's problem with complete outlier connections instead of its 6 random ones per node:
    the optimum, where CSA on the random graph may miss it (it then warns of overlay edges).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    a1, a2 = np.arange(n1), np.arange(n2)
    r = np.concatenate([i, a1, n1 + a2, n1 + j])
    c = np.concatenate([j, n2 + a1, a2, n2 + i])
    v = np.concatenate([cost, np.full(n1, ow), np.full(n2, ow), np.zeros(len(i), np.int64)])
    graph = coo_matrix((v + 1, (r, c)), shape=(n1 + n2, n1 + n2)).tocsr()
    left, right = min_weight_full_bipartite_matching(graph)
    return int(((left < n1) & (right < n2)).sum())


def _local(comp: np.ndarray, n_comp: int) -> np.ndarray:
    """Each node's number within its component (0, 1, ... in node order)."""
    order = np.argsort(comp, kind="stable")
    first = np.concatenate([[0], np.cumsum(np.bincount(comp, minlength=n_comp))[:-1]])
    local = np.empty(len(comp), dtype=np.int64)
    local[order] = np.arange(len(comp)) - first[comp[order]]
    return local


def one_to_one_pairs(p: np.ndarray, g: np.ndarray, theta: float) -> int:
    """Pairs in ``correspondPixels``' optimal assignment of two pixel lists (n x 2 int, y x).

    The problem splits exactly into the connected components of the pair graph; each is solved
    alone (SciPy's LAPJVsp is superlinear: one call on a whole class took ~2x the time), by
    cardinality when the bound above allows, else with the costs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(p) == 0 or len(g) == 0:
        return 0
    i, j, cost = _pairs(p, g, theta)
    if len(i) == 0:
        return 0
    n1, n2 = len(p), len(g)
    ow = int(math.ceil(_OUTLIER_COST * theta * _COST_SCALE))
    c_max = int(np.rint(theta * _COST_SCALE))
    graph = coo_matrix((np.ones(len(i), np.int8), (i, n1 + j)), shape=(n1 + n2, n1 + n2))
    n_comp, comp = connected_components(graph, directed=False)
    cp, cg = comp[:n1], comp[n1:]
    side_p, side_g = np.bincount(cp, minlength=n_comp), np.bincount(cg, minlength=n_comp)
    order = np.argsort(cp[i], kind="stable")  # edges grouped by component
    ce, i, j, cost = cp[i][order], _local(cp, n_comp)[i[order]], _local(cg, n_comp)[j[order]], \
        cost[order]
    starts = np.flatnonzero(np.r_[True, ce[1:] != ce[:-1]])
    ends = np.r_[starts[1:], len(ce)]
    total = 0
    for s, e, c in zip(starts, ends, ce[starts]):
        m1, m2 = int(side_p[c]), int(side_g[c])
        if min(m1, m2) == 1:  # a star: one pair
            total += 1
        elif min(m1, m2) * c_max < _SMALL * ow:
            total += _cardinality(i[s:e], j[s:e], m1, m2)
        else:
            total += _assignment_pairs(i[s:e], j[s:e], cost[s:e], m1, m2, ow)
    return total


def one_to_one_counts(b_pred: np.ndarray, b_gt: np.ndarray, n: int, theta: float) -> np.ndarray:
    """Pairs per class (n classes) in ``correspondPixels``' optimal one-to-one assignment.

    ``b_pred``, ``b_gt``: H x W integer boundary bit fields of one image (bit c = class c,
    :mod:`fcnlab.metrics.contours`). One assignment per class, as the script calls
    correspondPixels per class. Matched pixels are the same number in both maps, so
    precision = pairs / |B_pred| and recall = pairs / |B_gt|.
    """
    return np.array([one_to_one_pairs(np.argwhere((b_pred >> c) & 1),
                                       np.argwhere((b_gt >> c) & 1), theta) for c in range(n)],
                    dtype=np.int64)


def one_to_one_matches(b_pred: np.ndarray, b_gt: np.ndarray, theta: float) -> int:
    """Pairs in the optimal one-to-one assignment of two binary boundary maps (H x W bool)."""
    return one_to_one_pairs(np.argwhere(np.asarray(b_pred, dtype=bool)),
                            np.argwhere(np.asarray(b_gt, dtype=bool)), theta)
