"""Information imbalance (Glielmo et al. 2022) from exact, blocked distance ranks."""

from __future__ import annotations

import warnings

import numpy as np

from benchmark.errors import DataError
from benchmark.knn.graph import _check_matrix, _topk_rows

DEFAULT_MAX_EXACT_N = 20_000


def _sq_dists(Q: np.ndarray, X: np.ndarray, sq_x: np.ndarray) -> np.ndarray:
    d = Q @ X.T
    d *= -2
    d += np.einsum("ij,ij->i", Q, Q)[:, None]
    d += sq_x[None, :]
    return d


def information_imbalance(
    X: np.ndarray,
    Y: np.ndarray,
    k: int = 1,
    max_exact_n: int = DEFAULT_MAX_EXACT_N,
    seed: int = 0,
) -> float:
    """Delta(X -> Y) = (2 / N) * mean over points i (and over i's first k X-neighbours j) of the
    rank of j among Y-distances from i (nearest = 1). Euclidean distances; ties by index.

    Identical spaces give (k + 1) / N, unrelated ones about 1. For N <= max_exact_n every point
    is a query: the exact full-N value (DADApy's `return_information_imbalace` with
    subset_size >= N). For N > max_exact_n, ranks are still exact against all N points but
    averaged over a seeded uniform random subset of max_exact_n query points (declared with a
    warning): an unbiased estimate of the full-N value, not DADApy's default of averaging
    disjoint 2,000-point subsets (a different, subset-size-dependent quantity).
    Time O(m N (d_X + d_Y)) for m queries; memory O(block N).
    """
    return information_imbalances(X, Y, k, max_exact_n, seed)[0]


def _rank_sum(d_to: np.ndarray, nbrs: np.ndarray, r: np.ndarray, col: np.ndarray) -> float:
    """Sum over queries r and their neighbours (columns of nbrs) of the neighbour's rank in d_to (ties by index)."""
    total = 0.0
    for j in nbrs.T:
        t = d_to[r, j][:, None]
        total += float(((d_to < t) | ((d_to == t) & (col[None, :] < j[:, None]))).sum()) + r.size
    return total


def information_imbalances(
    X: np.ndarray,
    Y: np.ndarray,
    k: int = 1,
    max_exact_n: int = DEFAULT_MAX_EXACT_N,
    seed: int = 0,
) -> tuple[float, float]:
    """(Delta(X -> Y), Delta(Y -> X)) from one pass: each block of distances is computed once and serves
    both directions, half the matrix products of two `information_imbalance` calls (same numbers)."""
    X = _check_matrix(X, "X").astype(np.float64)
    Y = _check_matrix(Y, "Y").astype(np.float64)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise DataError(f"X and Y must have the same rows (paired samples): {n} vs {Y.shape[0]}")
    if not 1 <= k < n:
        raise DataError(f"information imbalance needs 1 <= k < n, got k={k}, n={n}")
    queries = np.arange(n)
    if n > max_exact_n:
        queries = np.sort(np.random.default_rng(seed).choice(n, max_exact_n, replace=False))
        warnings.warn(
            f"information imbalance: N={n} > max_exact_n={max_exact_n}; exact ranks averaged over "
            f"{max_exact_n} random query points (seed={seed})",
            stacklevel=2,
        )
    sq_x, sq_y = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    col = np.arange(n)
    block = max(1, 2**24 // n)
    xy = yx = 0.0
    for a in range(0, queries.size, block):
        q = queries[a : a + block]
        r = np.arange(q.size)
        dx = _sq_dists(X[q], X, sq_x)
        dx[r, q] = np.inf
        dy = _sq_dists(Y[q], Y, sq_y)
        dy[r, q] = np.inf
        xy += _rank_sum(dy, _topk_rows(-dx, k, 0)[1], r, col)
        yx += _rank_sum(dx, _topk_rows(-dy, k, 0)[1], r, col)
        del dx, dy
    norm = queries.size * k * n
    return 2.0 * xy / norm, 2.0 * yx / norm
