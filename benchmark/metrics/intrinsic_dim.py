"""Intrinsic dimension from Euclidean nearest-neighbour distances: TwoNN and Levina-Bickel MLE."""

from __future__ import annotations

import warnings

import numpy as np

from benchmark.errors import DataError
from benchmark.knn.graph import KnnGraph, check_matrix, knn_graph


def _euclidean_graph(X_or_graph: np.ndarray | KnnGraph, k: int, who: str) -> KnnGraph:
    if isinstance(X_or_graph, KnnGraph):
        if X_or_graph.metric != "euclidean":
            raise DataError(f"{who} needs a euclidean kNN graph (distances), got metric {X_or_graph.metric!r}")
        if X_or_graph.k < k:
            raise DataError(f"{who} needs k >= {k} stored neighbours, the graph has k={X_or_graph.k}")
        return X_or_graph
    X = check_matrix(X_or_graph)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*duplicate an earlier row.*")
        return knn_graph(X, k, metric="euclidean")


def _drop_zero(r1: np.ndarray, who: str) -> np.ndarray:
    """Mask of points kept: those with a non-zero first-neighbour distance (warns on the rest)."""
    keep = r1 > 0
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"{who}: dropped {dropped} of {r1.size} points with a zero nearest-neighbour distance (exact duplicates)",
            stacklevel=3,
        )
    return keep


def twonn(X_or_graph: np.ndarray | KnnGraph, discard_fraction: float = 0.1, drop_ties: bool = False) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017) with DADApy `compute_id_2NN` defaults.

    Input: raw features (Euclidean distances computed here) or a euclidean KnnGraph, k >= 2.
    mu_i = r2 / r1; log mu sorted ascending, the largest `discard_fraction` dropped (keep
    int(N (1 - discard_fraction))); y_i = -log(1 - i / N), i = 1.., N = all kept points;
    d = sum(x y) / sum(x^2) (least squares through the origin).
    Duplicates: unlike DADApy (r1 = 0 gives mu = inf), points with r1 = 0 are dropped with a
    warning, as scikit-dimension does, and N counts only the kept points. drop_ties=True also
    drops points with r1 = r2 (the IDCor authors' estimator).

    Cost: from a graph O(n log n) (one sort of n ratios), no distance computed, O(n) memory; from
    features one exact euclidean kNN graph (k = 2): n^2 d / 2 multiply-adds, O(block n + n) memory.
    """
    if not 0 < discard_fraction < 1:
        raise ValueError(f"discard_fraction must be in (0, 1) (0 would put -log(0) in the fit), got {discard_fraction}")
    g = _euclidean_graph(X_or_graph, 2, "TwoNN")
    return twonn_fit(g.values[:, 0], g.values[:, 1], discard_fraction, drop_ties)[2]


def twonn_fit(r1: np.ndarray, r2: np.ndarray, discard_fraction: float = 0.1, drop_ties: bool = False
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """(x, y, d) of `twonn`'s fit from first / second neighbour distances: x = sorted log(r2 / r1) of the kept
    points, y = -log(1 - i / N), d = the least-squares slope through the origin. Cost O(n log n)."""
    r1, r2 = np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64)
    keep = _drop_zero(r1, "TwoNN")
    if drop_ties:
        keep &= r1 != r2
    n = int(keep.sum())
    n_eff = int(n * (1 - discard_fraction))
    if n_eff < 2:
        raise DataError(f"TwoNN needs at least 2 usable points after dropping duplicates/ties, got {n_eff} of {r1.size}")
    x = np.sort(np.log(r2[keep] / r1[keep]))[:n_eff]
    y = -np.log(1 - np.arange(1, n_eff + 1) / n)
    sxx = float(x @ x)
    if sxx == 0:
        raise DataError("TwoNN undefined: every point has r2 == r1 (a lattice or heavily tied distances)")
    return x, y, float(x @ y / sxx)


def mle_id(graph: np.ndarray | KnnGraph, k: int = 20) -> float:
    """Levina-Bickel MLE intrinsic dimension (scikit-dimension conventions).

    m_i = (k - 1) / sum_{j<k} log(T_k / T_j) from the first k Euclidean neighbour distances;
    global = 1 / mean(1 / m_i) (MacKay-Ghahramani averaging). Accepts a euclidean KnnGraph with
    >= k neighbours or raw features. Points with T_1 = 0 (duplicates) are dropped with a warning.

    Cost: from a graph O(n k) time and memory, no distance computed; from features one exact
    euclidean kNN graph: n^2 d / 2 multiply-adds, O(block n + n k) memory.
    """
    if k < 2:
        raise ValueError(f"MLE needs k >= 2, got {k}")
    g = _euclidean_graph(graph, k, "MLE")
    T = g.values[:, :k].astype(np.float64)
    keep = _drop_zero(T[:, 0], "MLE")
    if not keep.any():
        raise DataError("MLE undefined: every point has a zero nearest-neighbour distance")
    T = T[keep]
    inv_m = np.log(T[:, -1:] / T[:, :-1]).sum(axis=1) / (k - 1)
    mean_inv = float(inv_m.mean())
    if mean_inv == 0:
        raise DataError("MLE undefined: all neighbour distances are equal")
    return 1.0 / mean_inv
