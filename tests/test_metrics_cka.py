"""Linear CKA (feature space) against dense kernel formulas; invariances; degenerate input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from benchmark.errors import DataError
from benchmark.metrics import linear_cka


def dense_cka(X: np.ndarray, Y: np.ndarray, eps: float = 1e-6) -> float:
    """Biased CKA from n x n kernels: HSIC_b(K, L) = trace(K H L H)."""
    n = X.shape[0]
    H = np.eye(n) - 1 / n
    K, L = X @ X.T, Y @ Y.T
    h = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731
    return h(K, L) / (np.sqrt(h(K, K) * h(L, L)) + eps)


def dense_cka_unbiased(X: np.ndarray, Y: np.ndarray, eps: float = 1e-6) -> float:
    def hsic_u(K, L):
        m = K.shape[0]
        K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
        return (np.sum(K * L.T) + K.sum() * L.sum() / ((m - 1) * (m - 2)) - 2 * np.sum(K @ L) / (m - 2)) / (m * (m - 3))

    K, L = X @ X.T, Y @ Y.T
    return hsic_u(K, L) / (np.sqrt(hsic_u(K, K) * hsic_u(L, L)) + eps)


def _pair(n=200, d1=12, d2=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d1)) + 2.0
    Y = np.sin(X[:, :d2]) + 0.3 * rng.standard_normal((n, d2))
    return X, Y


@pytest.mark.parametrize("n,d1,d2", [(10, 3, 4), (200, 12, 7), (150, 40, 30)])
def test_matches_dense(n, d1, d2):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, d1)) + 1.0
    Y = np.tanh(X @ rng.standard_normal((d1, d2))) + 0.3 * rng.standard_normal((n, d2))
    assert linear_cka(X, Y) == pytest.approx(dense_cka(X, Y), abs=1e-10)
    assert linear_cka(X, Y, unbiased=True) == pytest.approx(dense_cka_unbiased(X, Y), abs=1e-10)
    assert linear_cka(X, Y, eps=0) == pytest.approx(dense_cka(X, Y, 0), abs=1e-10)


def test_blocked_accumulation(monkeypatch):
    import benchmark.metrics.cka as cka

    X, Y = _pair(300)
    full = linear_cka(X, Y)
    monkeypatch.setattr(cka, "_BLOCK", 37)
    assert linear_cka(X, Y) == pytest.approx(full, abs=1e-12)


def test_invariances():
    X, Y = _pair()
    v = linear_cka(X, Y, eps=0)
    Q = ortho_group.rvs(X.shape[1], random_state=1)
    assert linear_cka(X @ Q * 3.5 + 1.0, Y, eps=0) == pytest.approx(v, abs=1e-10)
    assert linear_cka(Y, X, eps=0) == pytest.approx(v, abs=1e-12)
    perm = np.random.default_rng(2).permutation(X.shape[0])
    assert linear_cka(X[perm], Y[perm], eps=0) == pytest.approx(v, abs=1e-12)
    assert linear_cka(X, X, eps=0) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(3)
    assert linear_cka(rng.standard_normal((2000, 5)), rng.standard_normal((2000, 5))) < 0.02


def test_degenerate():
    X, Y = _pair()
    with pytest.raises(DataError, match="constant"):
        linear_cka(np.ones_like(X), Y)
    with pytest.raises(DataError, match="same rows"):
        linear_cka(X, Y[:-1])
    Y2 = Y.copy()
    Y2[3, 0] = np.inf
    with pytest.raises(DataError, match="1 of 200 rows"):
        linear_cka(X, Y2)


def test_float32_products_match_float64():
    """float32 input runs its products in float32 (block sums in float64): the value to ~1e-6 of float64's."""
    rng = np.random.default_rng(11)
    Z = rng.standard_normal((3000, 8))
    X = np.tanh(Z @ rng.standard_normal((8, 96))) + 5.0
    Y = Z @ rng.standard_normal((8, 64)) + 0.5 * rng.standard_normal((3000, 64))
    v64 = linear_cka(X, Y)
    v32 = linear_cka(X.astype(np.float32), Y.astype(np.float32))
    assert v32 == pytest.approx(v64, rel=1e-6) and v32 != v64
