"""Information imbalance and IDCor: dense references from the contract, DADApy where installed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from benchmark.errors import DataError
from benchmark.metrics import idcor, idcor_test, information_imbalance
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


def dense_ranks(X: np.ndarray, Y: np.ndarray, k: int = 1) -> np.ndarray:
    n = X.shape[0]
    DX, DY = cdist(X, X), cdist(Y, Y)
    np.fill_diagonal(DX, np.inf)
    np.fill_diagonal(DY, np.inf)
    nbrs = np.argsort(DX, axis=1, kind="stable")[:, :k]
    rank_of = np.empty((n, n), dtype=int)
    np.put_along_axis(rank_of, np.argsort(DY, axis=1, kind="stable"), np.arange(1, n + 1)[None, :], axis=1)
    return np.take_along_axis(rank_of, nbrs, axis=1)


@pytest.mark.parametrize("k", [1, 3])
def test_every_entry_through_the_exact_recount(monkeypatch, k):
    """A huge rounding bound sends every entry through the float64 recount; small blocks exercise the
    off-diagonal block pairs (counts for rows and for columns); the ranks stay those of the dense sort."""
    import benchmark.metrics.imbalance as imb

    from benchmark.metrics import information_imbalance_ranks

    X, Y = _views(257, 11)
    ref = dense_ranks(X, Y, k)
    np.testing.assert_array_equal(information_imbalance_ranks(X, Y, k, block_size=50), ref)
    monkeypatch.setattr(imb, "_U32", 0.05)
    np.testing.assert_array_equal(information_imbalance_ranks(X, Y, k, block_size=50), ref)
    assert information_imbalance(Y, X, k, block_size=64) == pytest.approx(dense_imbalance(Y, X, k), abs=1e-12)


def test_ties_and_duplicates_follow_the_index_rule():
    from benchmark.metrics import information_imbalance_ranks, information_imbalances

    grid = np.stack(np.meshgrid(np.arange(15), np.arange(15)), -1).reshape(-1, 2).astype(float)
    rng = np.random.default_rng(4)
    X = np.vstack([rng.standard_normal((200, 3)), rng.standard_normal((25, 3))])
    Y = grid.copy()
    Y[200:] = Y[:25]  # exact duplicates in Y
    for k in (1, 4):
        np.testing.assert_array_equal(information_imbalance_ranks(X, Y, k, block_size=40), dense_ranks(X, Y, k))
        np.testing.assert_array_equal(information_imbalance_ranks(Y, X, k, block_size=40), dense_ranks(Y, X, k))
    xy, yx = information_imbalances(X, Y, 2, block_size=40)
    assert (xy, yx) == (pytest.approx(dense_imbalance(X, Y, 2), abs=1e-12),
                        pytest.approx(dense_imbalance(Y, X, 2), abs=1e-12))


def test_given_graphs_give_the_same_values():
    from benchmark.knn import knn_graph, prepare_features
    from benchmark.metrics import information_imbalances

    X, Y = _views(300, 5)
    P, Q = prepare_features(X), prepare_features(Y)
    ref = information_imbalances(P, Q, 2)
    assert information_imbalances(P, Q, 2, graph_x=knn_graph(P, 10), graph_y=knn_graph(Q, 10)) == ref
    ge = knn_graph(P, 3, metric="euclidean")
    assert information_imbalances(P, Q, 2, graph_x=ge) == ref
    assert ref[0] == pytest.approx(dense_imbalance(P, Q, 2), abs=1e-12)
    with pytest.raises(DataError, match="not unit vectors"):
        information_imbalances(X, Y, graph_x=knn_graph(P, 3))
    with pytest.raises(DataError, match="k >= 2"):
        information_imbalances(P, Q, 2, graph_x=knn_graph(P, 1))


@pytest.mark.slow
def test_matches_dadapy_full_n_5000():
    """DADApy's value with one subset of all 5,000 points (the full-N imbalance), both directions, to 1e-9."""
    from benchmark.metrics import information_imbalances

    mc = dadapy_module("metric_comparisons")
    X, Y = _views(5000, 21)
    with pytest.warns(UserWarning, match="Subset size greater"):
        (xy, _), (yx, _) = mc.MetricComparisons(coordinates=X, verbose=False).return_information_imbalace(
            Y, k=1, subset_size=5000)
    got = information_imbalances(X, Y)
    assert got[0] == pytest.approx(xy, abs=1e-9) and got[1] == pytest.approx(yx, abs=1e-9)


@pytest.mark.slow
def test_exact_at_50000_without_subsample():
    """N = 50,000 (every point a query): ranks of 400 random points equal brute-force float64 counts, on a
    lattice (exact ties everywhere, so the recount path and the index rule carry the result)."""
    from benchmark.metrics import information_imbalance_ranks

    side = 224
    Y = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2).astype(float)
    n = Y.shape[0]
    rng = np.random.default_rng(0)
    X = Y + rng.standard_normal((n, 2)) * 3.0
    ranks = information_imbalance_ranks(X, Y)
    from benchmark.knn import knn_graph

    nb = knn_graph(X, 1, metric="euclidean").indices[:, 0]
    for i in rng.choice(n, 400, replace=False):
        d = np.sum((Y - Y[i]) ** 2, axis=1)
        d[i] = np.inf
        j = nb[i]
        assert ranks[i, 0] == 1 + np.sum(d < d[j]) + np.sum((d == d[j]) & (np.arange(n) < j))


def _dependent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 2))
    return Z @ rng.standard_normal((2, 5)), np.tanh(Z @ rng.standard_normal((2, 5)))


def test_idcor_pvalue_reaches_its_floor():
    X, Y = _dependent(300, 3)
    r = idcor_test(X, Y)
    assert r.n_perm == 999 and r.p_floor == pytest.approx(0.001) and r.p_value == pytest.approx(0.001)
    assert idcor(X, Y) == (r.corr, r.p_value)
    assert r.corr == pytest.approx((r.id_x + r.id_y - r.id_joint) / max(r.id_x, r.id_y))


def test_idcor_null_is_calibrated_under_independence():
    """Independent pairs: p-values spread over (0, 1] (a biased null would pile them up near 0 or 1)."""
    ps = []
    from benchmark.metrics.idcor import _block_size

    assert _block_size(512) == 8 and _block_size(120) == 2
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        n = 512 if seed % 2 else 120  # 512: permutations of 8-row blocks; 120: of single rows (element gather)
        ps.append(idcor(rng.standard_normal((n, 3)), rng.standard_normal((n, 3)), n_perm=99, seed=seed)[1])
    ps = np.array(ps)
    assert 0.3 < ps.mean() < 0.7
    assert np.mean(ps <= 0.1) < 0.3 and np.mean(ps > 0.5) > 0.25


def test_idcor_null_distances_reproduce_the_exact_joint_id():
    """The null's float32 distance path, on the identity permutation, gives the exact observed joint ID."""
    from benchmark.metrics.idcor import _id, _sq_dists, _standardise, _twonn_from_r

    X, Y = _dependent(400, 5)
    Xs, Ys = _standardise(X), _standardise(Y)
    J = _sq_dists(Xs) + _sq_dists(Ys)
    np.fill_diagonal(J, np.inf)
    P = np.sort(J, axis=1)
    assert _twonn_from_r(P[:, 0], P[:, 1]) == pytest.approx(_id(np.hstack([Xs, Ys])), rel=1e-6)


def test_idcor_subsample_is_declared():
    X, Y = _dependent(90, 1)
    with pytest.warns(UserWarning, match="subsample of 50 points"):
        r = idcor_test(X, Y, n_perm=19, max_n=50)
    assert r.n == 50 and r.p_floor == pytest.approx(0.05)
    with pytest.raises(ValueError, match="n_perm"):
        idcor_test(X, Y, n_perm=0)


def test_idcor_does_not_depend_on_threads():
    X, Y = _dependent(512, 9)
    W = np.random.default_rng(1).standard_normal((512, 4))
    assert idcor_test(X, W, n_perm=30, threads=1) == idcor_test(X, W, n_perm=30, threads=3)
    assert idcor_test(X, Y, n_perm=30, threads=2).p_value == pytest.approx(1 / 31)
