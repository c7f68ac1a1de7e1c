"""IDCor: a brute-force float64 reference of the authors' estimator and of its permutation null,
properties (row order, column scaling), the p-value's floor, and calibration under independence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from benchmark.errors import DataError
from benchmark.metrics import idcor, idcor_test
from benchmark.metrics.idcor import _block_size


def _views(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 3))
    X = np.hstack([Z, 0.1 * rng.standard_normal((n, 2))])
    Y = np.hstack([np.tanh(Z[:, :2]), rng.standard_normal((n, 3))])
    return X, Y


def _standardise(Z: np.ndarray) -> np.ndarray:
    return (Z - Z.mean(axis=0)) / (Z.std(axis=0, ddof=1) + 1e-9)


def dense_id(Z: np.ndarray, tie_rtol: float = 0.0) -> float:
    """The IDCor authors' TwoNN from a dense float64 distance matrix: drop r1 = 0 and r1 = r2, keep 90%."""
    D = cdist(Z, Z, "sqeuclidean")
    np.fill_diagonal(D, np.inf)
    r = np.sort(D, axis=1)[:, :2]
    keep = (r[:, 0] > 0) & (r[:, 1] - r[:, 0] > tie_rtol * r[:, 1])
    n = int(keep.sum())
    x = np.sort(0.5 * np.log(r[keep, 1] / r[keep, 0]))[: int(n * 0.9)]
    y = -np.log(1 - np.arange(1, x.size + 1) / n)
    return float(x @ y / (x @ x))


def dense_idcor(X: np.ndarray, Y: np.ndarray, n_perm: int, seed: int) -> tuple[float, float]:
    """corr and p by brute force, with the permutations idcor_test draws (same generator, same order)."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    Xs, Ys = _standardise(X[order]), _standardise(Y[order])
    ix, iy, ij = dense_id(Xs), dense_id(Ys), dense_id(np.hstack([Xs, Ys]))
    block = _block_size(n)
    below = 0
    for _ in range(n_perm):
        if block < 8:
            sigma = rng.permutation(n)
        else:
            sigma = (rng.permutation(n // block)[:, None] * block + np.arange(block)).ravel()
        below += dense_id(np.hstack([Xs, Ys[sigma]]), tie_rtol=1e-10) < ij
    return (ix + iy - ij) / max(ix, iy), (below + 1) / (n_perm + 1)


@pytest.mark.parametrize("n", [200, 640])  # single-row permutations (block 4 < 8), and 10-row blocks
def test_matches_brute_force(n):
    rng = np.random.default_rng(n)
    X, _ = _views(n, 3)
    W = np.hstack([X[:, :1] + 2.0 * rng.standard_normal((n, 1)), rng.standard_normal((n, 3))])  # weakly related
    for Y in (_views(n, 3)[1], W):
        corr, p = dense_idcor(X, Y, 39, seed=5)
        r = idcor_test(X, Y, n_perm=39, seed=5)
        assert r.corr == pytest.approx(corr, abs=1e-9)
        assert r.p_value == pytest.approx(p, abs=1e-12)
        assert r.p_floor == pytest.approx(1 / 40) and r.n == n and r.n_perm == 39


def test_row_order_and_column_scale():
    """corr and the three IDs ignore the row order and per-column affine maps (columns are standardised)."""
    X, Y = _views(500, 8)
    r = idcor_test(X, Y, n_perm=19)
    perm = np.random.default_rng(1).permutation(500)
    rp = idcor_test(X[perm], Y[perm], n_perm=19)
    assert (rp.corr, rp.id_x, rp.id_y, rp.id_joint) == pytest.approx((r.corr, r.id_x, r.id_y, r.id_joint), abs=1e-12)
    scale = np.array([1e-3, 5.0, 1.0, 30.0, 2.0])
    rs = idcor_test(X * scale + 7.0, Y * scale[::-1] - 3.0, n_perm=19)
    assert rs.corr == pytest.approx(r.corr, abs=1e-6)
    assert idcor_test(Y, X, n_perm=19).corr == pytest.approx(r.corr, abs=1e-12)  # symmetric in X, Y


def test_duplicate_rows_give_exact_zero_distances():
    from benchmark.metrics.idcor import _sq_dists

    rng = np.random.default_rng(2)
    Z = rng.standard_normal((300, 4)) * 100 + 1e4  # large offset: cancellation would leave non-zeros
    Z[[10, 50, 299]] = Z[3]
    D = _sq_dists(Z, block=64)
    assert D.dtype == np.float32 and np.all(D[np.ix_([3, 10, 50, 299], [3, 10, 50, 299])] == 0)
    np.testing.assert_allclose(D, cdist(Z, Z, "sqeuclidean"), rtol=1e-5, atol=1e-2)
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


@pytest.mark.slow
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
