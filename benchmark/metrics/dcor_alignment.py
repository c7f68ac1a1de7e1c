"""Distance correlation (Szekely, Rizzo & Bakirov 2007): dependence of two paired representations."""

from __future__ import annotations

import numpy as np

from benchmark.errors import DataError
from benchmark.knn import check_matrix
from benchmark.metrics.registry import DCOR_MAX_N


def _centred_distances(Z: np.ndarray) -> np.ndarray:
    """The double-centred Euclidean distance matrix A_ij = a_ij - a_i. - a_.j + a_.. (float64)."""
    sq = np.einsum("ij,ij->i", Z, Z)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0))
    np.fill_diagonal(D, 0.0)
    row = D.mean(axis=1)
    return D - row[:, None] - row[None, :] + row.mean()


def distance_correlation(X: np.ndarray, Y: np.ndarray) -> float:
    """dCor(X, Y) in [0, 1], the biased (V-statistic) estimator, as `dcor.distance_correlation`.

    dCov^2 = mean(A * B) over the double-centred distance matrices A of X and B of Y; dCor =
    sqrt(dCov^2(X, Y) / sqrt(dVar^2(X) dVar^2(Y))), 0 when either variance is 0. Rows must be paired.
    Cost: O(n^2 (d_X + d_Y)) time and three n x n float64 matrices (n = 2000: ~100 MB).
    """
    X, Y = check_matrix(X, "X").astype(np.float64), check_matrix(Y, "Y").astype(np.float64)
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"X and Y must have the same rows (paired samples): {X.shape[0]} vs {Y.shape[0]}")
    if X.shape[0] < 2:
        raise DataError(f"distance correlation needs at least 2 samples, got {X.shape[0]}")
    A = _centred_distances(X)
    B = _centred_distances(Y)
    dcov = float(np.mean(A * B))
    var_x = float(np.mean(A * A))
    del A
    var_y = float(np.mean(B * B))
    if var_x <= 0.0 or var_y <= 0.0:
        return 0.0
    return float(np.sqrt(max(dcov, 0.0) / np.sqrt(var_x * var_y)))


def dcor_subsample(n: int, seed: int = 0) -> np.ndarray:
    """Row indices used for `dcor_to_ref`: all when n <= DCOR_MAX_N, else a sorted seeded subsample."""
    if n <= DCOR_MAX_N:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=DCOR_MAX_N, replace=False))
