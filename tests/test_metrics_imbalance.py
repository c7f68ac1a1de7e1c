"""Information imbalance and IDCor: dense references from the contract, DADApy where installed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from benchmark.errors import DataError
from benchmark.metrics import idcor, information_imbalance
from tests.test_metrics_id import dadapy_module


def dense_imbalance(X: np.ndarray, Y: np.ndarray, k: int = 1) -> float:
    n = X.shape[0]
    DX, DY = cdist(X, X), cdist(Y, Y)
    np.fill_diagonal(DX, np.inf)
    np.fill_diagonal(DY, np.inf)
    nbrs = np.argsort(DX, axis=1, kind="stable")[:, :k]
    rank_of = np.empty((n, n), dtype=int)
    np.put_along_axis(rank_of, np.argsort(DY, axis=1, kind="stable"), np.arange(1, n + 1)[None, :], axis=1)
    return 2.0 / n * np.take_along_axis(rank_of, nbrs, axis=1).mean()


def _views(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 3))
    X = np.hstack([Z, 0.1 * rng.standard_normal((n, 2))])
    Y = np.hstack([np.tanh(Z[:, :2]), rng.standard_normal((n, 3))])
    return X, Y


@pytest.mark.parametrize("k", [1, 3])
def test_matches_dense(k):
    X, Y = _views(300, k)
    assert information_imbalance(X, Y, k) == pytest.approx(dense_imbalance(X, Y, k), abs=1e-12)
    assert information_imbalance(Y, X, k) == pytest.approx(dense_imbalance(Y, X, k), abs=1e-12)


def test_matches_dadapy():
    mc = dadapy_module("metric_comparisons")
    X, Y = _views(400, 7)
    with pytest.warns(UserWarning, match="Subset size greater"):
        (xy, _), (yx, _) = mc.MetricComparisons(coordinates=X, verbose=False).return_information_imbalace(Y, k=1)
    assert information_imbalance(X, Y) == pytest.approx(xy, abs=1e-12)
    assert information_imbalance(Y, X) == pytest.approx(yx, abs=1e-12)


def test_properties():
    X, Y = _views(300, 2)
    n = 300
    assert information_imbalance(X, X, 2) == pytest.approx(3 / n)
    assert information_imbalance(X, 5 * X + 1) == pytest.approx(2 / n)
    rng = np.random.default_rng(0)
    assert information_imbalance(X, rng.standard_normal((n, 4))) == pytest.approx(1.0, abs=0.12)
    assert information_imbalance(X, X[:, :1]) < 0.5 < information_imbalance(X[:, :1], X) < 1.0
    perm = rng.permutation(n)
    assert information_imbalance(X[perm], Y[perm]) == pytest.approx(information_imbalance(X, Y), abs=1e-12)


def test_large_n_uses_declared_query_subsample():
    X, Y = _views(600, 3)
    with pytest.warns(UserWarning, match="200 random query points"):
        approx = information_imbalance(X, Y, max_exact_n=200, seed=1)
    assert approx == pytest.approx(information_imbalance(X, Y), abs=0.05)


def test_imbalance_errors():
    X, Y = _views(50, 0)
    with pytest.raises(DataError, match="same rows"):
        information_imbalance(X, Y[:-1])
    with pytest.raises(DataError, match="k < n"):
        information_imbalance(X, Y, k=50)


def test_idcor_dependent_vs_independent():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((600, 2))
    X = Z @ rng.standard_normal((2, 5))
    Y = np.tanh(Z @ rng.standard_normal((2, 5)))
    corr, p = idcor(X, Y, n_perm=9, seed=1)
    assert corr > 0.8 and p == pytest.approx(0.1)
    W = rng.standard_normal((600, 2))
    corr0, p0 = idcor(X, W, n_perm=9, seed=1)
    assert abs(corr0) < 0.2 and p0 > 0.1
    assert idcor(X, Y, n_perm=9, seed=1) == (corr, p)


def test_idcor_errors():
    X, Y = _views(40, 0)
    with pytest.raises(DataError, match="same rows"):
        idcor(X, Y[:-1])
    X[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        idcor(X, Y)


def test_both_directions_in_one_pass_equal_two_single_calls():
    from benchmark.metrics import information_imbalances

    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 5))
    Y = np.tanh(X @ rng.standard_normal((5, 3))) + 0.2 * rng.standard_normal((300, 3))
    for k in (1, 3):
        assert information_imbalances(X, Y, k) == (information_imbalance(X, Y, k), information_imbalance(Y, X, k))
        assert information_imbalances(X, Y, k)[1] == pytest.approx(dense_imbalance(Y, X, k), abs=1e-12)
