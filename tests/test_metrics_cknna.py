"""CKNNA and mutual-kNN against dense n x n references written from the contract."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import DataError
from benchmark.knn import KnnGraph, knn_graph, prepare_features
from benchmark.metrics import alignment_ci, cknna, linear_cka, mutual_knn


def _hsic_u(K: np.ndarray, L: np.ndarray) -> float:
    m = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    val = np.sum(Kt * Lt.T) + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * np.sum(Kt @ Lt) / (m - 2)
    return val / (m * (m - 3))


def _hsic_b(K: np.ndarray, L: np.ndarray) -> float:
    H = np.eye(K.shape[0]) - 1 / K.shape[0]
    return float(np.trace(K @ H @ L @ H))


def _mask(S: np.ndarray, k: int, exclude_diag: bool) -> np.ndarray:
    S = S.copy()
    if exclude_diag:
        np.fill_diagonal(S, -np.inf)
    idx = np.argsort(-S, axis=1, kind="stable")[:, :k]
    M = np.zeros_like(S)
    np.put_along_axis(M, idx, 1.0, axis=1)
    return M


def dense_cknna(A: np.ndarray, B: np.ndarray, k: int, unbiased: bool = True, eps: float = 1e-6) -> float:
    """platonic-rep CKNNA: row masks (not symmetrised), transposed first HSIC term, eps after sqrt."""
    K, L = A @ A.T, B @ B.T
    hsic = _hsic_u if unbiased else _hsic_b

    def sim(K, L):
        M = _mask(K, k, unbiased) * _mask(L, k, unbiased)
        return hsic(M * K, M * L)

    return sim(K, L) / (np.sqrt(sim(K, K) * sim(L, L)) + eps)


def dense_mutual_knn(A: np.ndarray, B: np.ndarray, k: int) -> float:
    return float((_mask(A @ A.T, k, True) * _mask(B @ B.T, k, True)).sum(axis=1).mean() / k)


def _pair(n: int, d1: int, d2: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d1))
    B = np.tanh(A @ rng.standard_normal((d1, d2))) + noise * rng.standard_normal((n, d2))
    return prepare_features(A), prepare_features(B)


CASES = [(40, 5, 7, 2), (120, 16, 8, 5), (300, 32, 12, 10), (300, 3, 20, 10), (400, 64, 64, 15)]


@pytest.mark.parametrize("n,d1,d2,k", CASES)
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.filterwarnings("ignore:.*duplicate an earlier row")
def test_cknna_matches_dense(n, d1, d2, k, unbiased):
    A, B = _pair(n, d1, d2, 0.3, n + k)
    ga, gb = knn_graph(A, k), knn_graph(B, k)
    for eps in (1e-6, 0.0):
        ref = dense_cknna(A, B, k, unbiased, eps)
        assert cknna(ga, gb, eps=eps, unbiased=unbiased) == pytest.approx(ref, abs=1e-6)
    assert cknna(gb, ga, unbiased=unbiased) == pytest.approx(dense_cknna(B, A, k, unbiased), abs=1e-6)


def test_cknna_uses_first_k_of_longer_graphs():
    A, B = _pair(150, 8, 8, 0.5, 1)
    ga, gb = knn_graph(A, 20), knn_graph(B, 15)
    assert cknna(ga, gb, k=6) == pytest.approx(dense_cknna(A, B, 6), abs=1e-6)
    assert cknna(ga, gb) == pytest.approx(dense_cknna(A, B, 15), abs=1e-6)


def test_full_k_equals_unbiased_cka():
    A, B = _pair(60, 6, 9, 0.4, 3)
    n = A.shape[0]
    value = cknna(knn_graph(A, n - 1), knn_graph(B, n - 1))
    K, L = A @ A.T, B @ B.T
    dense_cka = _hsic_u(K, L) / (np.sqrt(_hsic_u(K, K) * _hsic_u(L, L)) + 1e-6)
    assert value == pytest.approx(dense_cka, abs=1e-9)
    assert value == pytest.approx(linear_cka(A, B, unbiased=True), abs=1e-9)


@pytest.mark.parametrize("n,d1,d2,k", CASES)
@pytest.mark.filterwarnings("ignore:.*duplicate an earlier row")
def test_mutual_knn_matches_dense(n, d1, d2, k):
    A, B = _pair(n, d1, d2, 0.3, n)
    ga, gb = knn_graph(A, k), knn_graph(B, k)
    assert mutual_knn(ga, gb) == pytest.approx(dense_mutual_knn(A, B, k), abs=1e-12)
    assert mutual_knn(ga, gb) == mutual_knn(gb, ga)


def test_properties():
    A, B = _pair(300, 10, 10, 0.2, 7)
    ga, gb = knn_graph(A, 10), knn_graph(B, 10)
    assert cknna(ga, ga, eps=0) == pytest.approx(1.0, abs=1e-12)
    assert mutual_knn(ga, ga) == 1.0
    assert cknna(ga, gb, unbiased=False) == pytest.approx(cknna(gb, ga, unbiased=False), abs=1e-12)
    assert cknna(ga, gb) == pytest.approx(cknna(gb, ga), abs=0.01)
    perm = np.random.default_rng(0).permutation(300)
    gpa, gpb = knn_graph(A[perm], 10), knn_graph(B[perm], 10)
    assert cknna(gpa, gpb) == pytest.approx(cknna(ga, gb), abs=1e-10)
    assert mutual_knn(gpa, gpb) == pytest.approx(mutual_knn(ga, gb), abs=1e-12)
    rng = np.random.default_rng(1)
    R1, R2 = prepare_features(rng.standard_normal((300, 10))), prepare_features(rng.standard_normal((300, 10)))
    gr1, gr2 = knn_graph(R1, 10), knn_graph(R2, 10)
    assert abs(cknna(gr1, gr2)) < 0.1 and mutual_knn(gr1, gr2) < 0.1
    assert cknna(ga, gb) > 0.2


def test_input_errors():
    A, B = _pair(50, 4, 4, 0.3, 2)
    ga = knn_graph(A, 5)
    with pytest.raises(DataError, match="different numbers"):
        cknna(ga, knn_graph(B[:40], 5))
    with pytest.raises(DataError, match="exceeds"):
        cknna(ga, knn_graph(B, 5), k=8)
    with pytest.raises(DataError, match="cosine"):
        cknna(knn_graph(A, 5, metric="euclidean"), knn_graph(B, 5, metric="euclidean"))
    with pytest.raises(DataError, match="exceeds"):
        mutual_knn(ga, ga, k=6)


def test_degenerate_masks_give_nan_with_warning():
    ga = KnnGraph(np.array([[4], [4], [1], [5], [3], [3]]), np.array([[-0.6], [0.88], [-0.27], [-0.79], [0.26], [0.85]]), "cosine")
    gb = KnnGraph(np.array([[1], [0], [3], [2], [5], [4]]), np.ones((6, 1)), "cosine")
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(cknna(ga, gb))


def test_ci_contains_value_and_shrinks_with_n():
    widths = []
    for n in (200, 1600):
        A, B = _pair(n, 8, 8, 0.5, 4)
        ga, gb = knn_graph(A, 10), knn_graph(B, 10)
        for metric, f in (("cknna", cknna), ("mutual_knn", mutual_knn)):
            lo, hi = alignment_ci(ga, gb, metric=metric, n_boot=100)
            assert lo < f(ga, gb) < hi
            assert alignment_ci(ga, gb, metric=metric, n_boot=100) == (lo, hi)
            if metric == "cknna":
                widths.append(hi - lo)
    assert widths[1] < 0.75 * widths[0]


def test_ci_mutual_knn_is_bootstrap_of_mean():
    A, B = _pair(500, 6, 6, 0.5, 9)
    ga, gb = knn_graph(A, 10), knn_graph(B, 10)
    lo, hi = alignment_ci(ga, gb, "mutual_knn", n_boot=400)
    per_point = (_mask(A @ A.T, 10, True) * _mask(B @ B.T, 10, True)).sum(axis=1) / 10
    se = per_point.std(ddof=1) / np.sqrt(500)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert lo < dense_mutual_knn(A, B, 10) < hi


def test_bootstrap_replicates_match_dense_row_weighted_hsic():
    """Each bootstrap replicate is HSIC_u of the masked kernels with row i scaled by its count w_i."""
    from benchmark.metrics.knn_alignment import _both_support, _self_support, _WeightedHsic

    n, k = 60, 5
    A, B = _pair(n, 6, 5, 0.5, 3)
    ga, gb = knn_graph(A, k), knn_graph(B, k)
    K, L = A @ A.T, B @ B.T
    MK, ML = _mask(K, k, True), _mask(L, k, True)
    W = np.random.default_rng(1).multinomial(n, np.full(n, 1 / n), size=4).astype(np.float64)
    cases = [(_both_support(ga, gb, k, True), MK * ML * K, MK * ML * L),
             (_self_support(ga, k, True), MK * K, MK * K), (_self_support(gb, k, True), ML * L, ML * L)]
    for support, Kd, Ld in cases:
        want = [_hsic_u(w[:, None] * Kd, w[:, None] * Ld) for w in W]
        np.testing.assert_allclose(_WeightedHsic(support)(W), want, rtol=1e-9, atol=1e-15)
    ones = _WeightedHsic(cases[0][0])(np.ones((1, n)))
    assert ones[0] == pytest.approx(_hsic_u(*cases[0][1:]), rel=1e-12)
