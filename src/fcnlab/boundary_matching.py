"""One-to-one boundary matching for the BF score (``matching="one_to_one"``).

The authors' BF script matches boundary pixels one to one with BSDS ``correspondPixels``; this
solves the same assignment problem exactly with SciPy (see :func:`one_to_one_counts`). Kept apart
from :mod:`fcnlab.boundary` because it is the slow, CPU-only option (about 10x the default).
"""

from __future__ import annotations

import math

import numpy as np

from fcnlab.boundary import disk_offsets

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
