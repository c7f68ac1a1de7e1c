"""One kNN pass, several uses: cosine + euclidean graphs of unit rows from one GEMM, the euclidean graph from a
stored cosine graph, and a block visitor riding on the pass (rank counts: tests/test_metrics_imbalance.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.errors import DataError
from benchmark.knn import euclidean_from_cosine, knn_graph, knn_graphs, prepare_features


def _related(n: int, d: int, seed: int, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    return prepare_features(np.tanh(z @ rng.standard_normal((4, d))) + 0.2 * rng.standard_normal((n, d))).astype(dtype)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*duplicate an earlier row.*")
        return fn(*a, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,k_euc,block", [(26, 20, 128), (5, 9, 64), (3, 3, 4096)])
def test_fused_pass_equals_the_two_graphs(dtype, k, k_euc, block):
    X = _related(600, 24, 1, dtype)
    g, ge = knn_graphs(X, k, k_euc, block_size=block)
    ref, ref_e = knn_graph(X, k, block_size=block), knn_graph(X, k_euc, metric="euclidean", block_size=block)
    np.testing.assert_array_equal(g.indices, ref.indices)
    np.testing.assert_array_equal(g.values, ref.values)
    np.testing.assert_array_equal(ge.indices, ref_e.indices)
    assert ge.metric == "euclidean" and ge.values.dtype == np.float64
    np.testing.assert_allclose(ge.values, ref_e.values, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_and_duplicates_follow_the_tie_rule(dtype):
    """Integer features on the unit sphere: many exact ties (and duplicates), broken lower index first."""
    rng = np.random.default_rng(4)
    B = rng.integers(-1, 2, size=(400, 4)).astype(float)
    X = prepare_features(B[np.abs(B).sum(axis=1) > 0], clip_quantile=None).astype(dtype)
    g, ge = _quiet(knn_graphs, X, 8, 6, block_size=50)
    ref, ref_e = _quiet(knn_graph, X, 8, block_size=50), _quiet(knn_graph, X, 6, metric="euclidean", block_size=50)
    np.testing.assert_array_equal(g.indices, ref.indices)
    np.testing.assert_array_equal(ge.indices, ref_e.indices)
    np.testing.assert_allclose(ge.values, ref_e.values, rtol=1e-12, atol=1e-15)
    via_cache = _quiet(knn_graph, X, 6, metric="euclidean", candidates=ref)
    np.testing.assert_array_equal(via_cache.indices, ref_e.indices)
    np.testing.assert_allclose(via_cache.values, ref_e.values, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_euclidean_from_a_stored_cosine_graph(dtype):
    X = _related(500, 16, 2, dtype)
    g = knn_graph(X, 26)
    ge = euclidean_from_cosine(X, g, 20)
    ref = knn_graph(X, 20, metric="euclidean")
    np.testing.assert_array_equal(ge.indices, ref.indices)
    np.testing.assert_allclose(ge.values, ref.values, rtol=1e-12, atol=0)


def test_visitor_sees_every_pair_once():
    X = _related(333, 8, 3)
    seen = np.zeros((333, 333), dtype=int)

    def visit(S, a, b):  # the pass multiplies float64 rows rounded to float32 (the refine is exact)
        assert S.dtype == np.float32
        np.testing.assert_allclose(S, X[a : a + S.shape[0]] @ X[b : b + S.shape[1]].T, rtol=1e-5, atol=1e-6)
        seen[a : a + S.shape[0], b : b + S.shape[1]] += 1

    knn_graph(X, 4, block_size=70, visit=visit)
    assert (np.triu(seen) + np.tril(seen.T, -1) == 1).all()


def test_bad_inputs_say_what_to_pass():
    X = _related(100, 8, 5)
    g = knn_graph(X, 6)
    with pytest.raises(DataError, match="unit-norm rows"):
        knn_graphs(3 * X, 6, 4)
    with pytest.raises(DataError, match="unit-norm rows"):
        euclidean_from_cosine(3 * X, g, 4)
    with pytest.raises(DataError, match="k < the cosine graph's k=6"):
        euclidean_from_cosine(X, g, 6)
    with pytest.raises(DataError, match="cosine graph"):
        euclidean_from_cosine(X, knn_graph(X, 6, metric="euclidean"), 4)
    with pytest.raises(ValueError, match="numpy backend"):
        knn_graph(X, 3, backend="faiss", visit=lambda S, a, b: None)
    with pytest.raises(ValueError, match="metric must be 'euclidean'"):
        knn_graph(X, 3, candidates=g)
