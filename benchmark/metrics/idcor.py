"""IDCor (Basile et al. 2025): correlation of two representations through intrinsic dimension."""

from __future__ import annotations

import warnings

import numpy as np

from benchmark.errors import DataError
from benchmark.knn.graph import _check_matrix
from benchmark.metrics.intrinsic_dim import twonn


def _standardise(Z: np.ndarray) -> np.ndarray:
    Z = Z.astype(np.float64)
    return (Z - Z.mean(axis=0)) / (Z.std(axis=0, ddof=1) + 1e-9)


def _id(Z: np.ndarray) -> float:
    return twonn(Z, discard_fraction=0.1, drop_ties=True)


def idcor(X: np.ndarray, Y: np.ndarray, n_perm: int = 20, seed: int = 0) -> tuple[float, float]:
    """(corr, p) per the IDCor authors: columns standardised (ddof = 1, + 1e-9); TwoNN that
    drops points with r1 = 0 or r1 = r2; corr = (ID(X) + ID(Y) - ID([X | Y])) / max(ID(X), ID(Y));
    p = (#{b : ID([X | Y[perm_b]]) < ID([X | Y])} + 1) / (n_perm + 1), one-sided, floor
    1 / (n_perm + 1). Costs n_perm + 3 exact 2-NN searches over n points.
    """
    X, Y = _check_matrix(X, "X"), _check_matrix(Y, "Y")
    n = X.shape[0]
    if Y.shape[0] != n:
        raise DataError(f"X and Y must have the same rows (paired samples): {n} vs {Y.shape[0]}")
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    Xs, Ys = _standardise(X), _standardise(Y)
    id1, id2 = _id(Xs), _id(Ys)
    id_joint = _id(np.hstack([Xs, Ys]))
    corr = (id1 + id2 - id_joint) / max(id1, id2)
    rng = np.random.default_rng(seed)
    below = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_perm):
            below += _id(np.hstack([Xs, Ys[rng.permutation(n)]])) < id_joint
    return float(corr), float((below + 1) / (n_perm + 1))
