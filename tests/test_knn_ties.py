"""The exact tie rule of knn_graph (equal scores: lower index first) and tied_fraction."""

from fractions import Fraction
from math import isqrt

import numpy as np
import pytest

from benchmark.knn import knn_graph, prepare_for_alignment, tied_fraction

BACKENDS = ["numpy", "torch"] + (["faiss"] if __import__("importlib").util.find_spec("faiss") else [])


def _bits(n: int = 300, d: int = 40, p: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    B = (rng.random((n, d)) < p).astype(np.int64)
    B[B.sum(axis=1) == 0, 0] = 1
    return B


def _reference(B: np.ndarray, k: int) -> tuple[np.ndarray, list[list[Fraction]]]:
    """Contract: rank by exact cosine^2-with-sign (rational), ties by lower index; self excluded."""
    G = B @ B.T
    c = np.diag(G)
    n = len(B)
    idx, vals = [], []
    for i in range(n):
        keys = [(Fraction(int(G[i, j]) ** 2, int(c[i] * c[j])), j) for j in range(n) if j != i]
        keys.sort(key=lambda t: (-t[0], t[1]))
        idx.append([j for _, j in keys[: k + 1]])
        vals.append([v for v, _ in keys[: k + 1]])
    return np.array(idx), vals


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_ties_match_reference(backend: str, dtype: type) -> None:
    B = _bits()
    X, _ = prepare_for_alignment(B.astype(dtype))
    ref, _ = _reference(B, 10)
    g = knn_graph(X, 10, backend=backend, block_size=64)
    assert np.array_equal(g.indices, ref[:, :10])


def test_permuted_duplicates_match_reference() -> None:
    B = _bits(n=120, seed=1)
    B = np.concatenate([B, B[np.random.default_rng(2).permutation(120)[:60]]])
    X, _ = prepare_for_alignment(B.astype(np.float64))
    ref, _ = _reference(B, 8)
    with pytest.warns(UserWarning):
        g = knn_graph(X, 8, block_size=50)
    assert np.array_equal(g.indices, ref[:, :8])
    with pytest.warns(UserWarning):
        ge = knn_graph(X, 8, metric="euclidean", block_size=50)
    assert np.array_equal(ge.indices, ref[:, :8])


def test_backends_agree_euclidean_integer() -> None:
    B = _bits(n=200, seed=3).astype(np.float64)
    D = ((B[:, None, :] - B[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(D, 10**9)
    ref = np.lexsort((np.broadcast_to(np.arange(200), D.shape), D), axis=1)[:, :6]
    for backend in BACKENDS:
        g = knn_graph(B, 6, metric="euclidean", backend=backend, block_size=64)
        assert np.array_equal(g.indices, ref), backend
        assert np.array_equal(g.values, np.sqrt(np.take_along_axis(D, ref, axis=1))), backend


def test_tied_fraction_brute_force() -> None:
    B = _bits()
    X, _ = prepare_for_alignment(B.astype(np.float64))
    _, vals = _reference(B, 10)
    expect = np.mean([v[9] == v[10] for v in vals])
    g = knn_graph(X, 11)
    assert 0 < expect < 1
    assert tied_fraction(g, 10) == pytest.approx(expect, abs=0)


def test_tied_fraction_continuous_is_zero_and_needs_k_plus_one() -> None:
    X, _ = prepare_for_alignment(np.random.default_rng(0).normal(size=(300, 16)))
    g = knn_graph(X, 11)
    assert tied_fraction(g, 10) == 0.0
    with pytest.raises(ValueError, match="k\\+1"):
        tied_fraction(g, 11)
