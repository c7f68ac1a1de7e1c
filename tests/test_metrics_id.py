"""TwoNN and MLE intrinsic dimension: dense references from the contract, DADApy where installed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from benchmark.errors import DataError
from benchmark.knn import knn_graph
from benchmark.metrics import mle_id, twonn


def dadapy_module(name: str):
    """Import a DADApy submodule. dadapy/__init__ imports its jax-based modules, so when jax is
    absent the package is registered without running __init__ and only `name` is loaded."""
    if "dadapy" not in sys.modules:
        spec = importlib.util.find_spec("dadapy")
        if spec is None:
            pytest.skip("dadapy not installed")
        try:
            import dadapy  # noqa: F401
        except ImportError:
            pkg = types.ModuleType("dadapy")
            pkg.__spec__ = spec
            pkg.__path__ = list(spec.submodule_search_locations)
            sys.modules["dadapy"] = pkg
    return importlib.import_module(f"dadapy.{name}")


def dense_twonn(X: np.ndarray, fraction: float = 0.9) -> float:
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    r = np.sort(D, axis=1)[:, :2]
    N = X.shape[0]
    x = np.sort(np.log(r[:, 1] / r[:, 0]))[: int(N * fraction)]
    y = -np.log(1 - np.arange(1, x.size + 1) / N)
    return float(np.sum(x * y) / np.sum(x * x))


def dense_mle(X: np.ndarray, k: int) -> float:
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    T = np.sort(D, axis=1)[:, :k]
    m = (k - 1) / np.log(T[:, -1:] / T[:, :-1]).sum(axis=1)
    return float(1 / np.mean(1 / m))


def _manifold(n: int, d: int, D: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, D))


@pytest.mark.parametrize("n,d,D", [(300, 2, 5), (800, 5, 20), (500, 8, 8)])
def test_twonn_matches_dense(n, d, D):
    X = _manifold(n, d, D, n)
    assert twonn(X) == pytest.approx(dense_twonn(X), abs=1e-9)
    assert twonn(knn_graph(X, 3, metric="euclidean")) == pytest.approx(dense_twonn(X), abs=1e-9)
    assert twonn(X, discard_fraction=0.3) == pytest.approx(dense_twonn(X, 0.7), abs=1e-9)


@pytest.mark.parametrize("n,d,D", [(300, 2, 5), (800, 5, 20)])
def test_twonn_matches_dadapy(n, d, D):
    ide = dadapy_module("id_estimation")
    X = _manifold(n, d, D, n + 1)
    ref = ide.IdEstimation(coordinates=X, verbose=False).compute_id_2NN()[0]
    assert twonn(X) == pytest.approx(ref, rel=1e-8)
    assert twonn(X) == pytest.approx(d, rel=0.25)


@pytest.mark.parametrize("k", [5, 20])
def test_mle_matches_dense(k):
    X = _manifold(600, 4, 12, 3)
    assert mle_id(X, k) == pytest.approx(dense_mle(X, k), abs=1e-9)
    assert mle_id(knn_graph(X, 25, metric="euclidean"), k) == pytest.approx(dense_mle(X, k), abs=1e-9)
    assert mle_id(X, k) == pytest.approx(4, rel=0.25)


def test_invariances():
    X = _manifold(400, 3, 6, 4)
    v = twonn(X)
    assert twonn(X * 7.0 + 3.0) == pytest.approx(v, abs=1e-9)
    perm = np.random.default_rng(0).permutation(400)
    assert twonn(X[perm]) == pytest.approx(v, abs=1e-9)
    assert mle_id(X[perm]) == pytest.approx(mle_id(X), abs=1e-9)


def test_duplicates_dropped_with_warning():
    X = _manifold(300, 3, 6, 5)
    Xd = np.vstack([X, X[:20]])
    with pytest.warns(UserWarning, match="dropped 40 of 320 points"):
        v = twonn(Xd)
    D = cdist(Xd, Xd)
    np.fill_diagonal(D, np.inf)
    r = np.sort(D, axis=1)[:, :2]
    ok = r[:, 0] > 0
    x = np.sort(np.log(r[ok, 1] / r[ok, 0]))[: int(ok.sum() * 0.9)]
    y = -np.log(1 - np.arange(1, x.size + 1) / ok.sum())
    assert v == pytest.approx(np.sum(x * y) / np.sum(x * x), abs=1e-9)
    with pytest.warns(UserWarning, match="dropped 40 of 320"):
        assert np.isfinite(mle_id(Xd))


def test_degenerate_errors():
    with pytest.raises(DataError, match="identical"):
        twonn(np.ones((10, 3)))
    with pytest.raises(DataError, match="euclidean"):
        twonn(knn_graph(_manifold(50, 2, 3, 0) + 5, 3))
    with pytest.raises(DataError, match="k >= 20"):
        mle_id(knn_graph(_manifold(50, 2, 3, 0), 5, metric="euclidean"))
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2).astype(float)
    with pytest.raises(DataError, match="r2 == r1"):
        twonn(grid)


def test_graph_input_needs_no_second_distance_pass(monkeypatch):
    """From a stored euclidean graph, TwoNN and MLE read its distances only (no kNN search, no features)."""
    import benchmark.metrics.intrinsic_dim as idm

    X = _manifold(500, 3, 9, 8)
    g = knn_graph(X, 20, metric="euclidean")
    expected = (twonn(X), mle_id(X, 20))

    def forbidden(*a, **kw):
        raise AssertionError("a second kNN pass was made")

    monkeypatch.setattr(idm, "knn_graph", forbidden)
    assert (twonn(g), mle_id(g, 20)) == (pytest.approx(expected[0], abs=1e-12), pytest.approx(expected[1], abs=1e-12))
