"""benchmark.compare: pairwise matrices and dendrogram order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.compare import dendrogram_order, pairwise_matrices
from benchmark.errors import DataError
from benchmark.knn import knn_graph, prepare_features
from benchmark.metrics import cknna, linear_cka, mutual_knn


def _models(n: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, 6))
    W = rng.standard_normal((n, 6))
    return {
        "a1": Z @ rng.standard_normal((6, 16)),
        "b1": W @ rng.standard_normal((6, 8)),
        "a2": np.tanh(Z @ rng.standard_normal((6, 12))) + 0.1 * rng.standard_normal((n, 12)),
        "b2": W @ rng.standard_normal((6, 10)) + 0.1 * rng.standard_normal((n, 10)),
    }


def test_matrices_match_single_calls():
    feats = _models()
    m = pairwise_matrices(feats, k=8)
    assert set(m) == {"cknna", "mutual_knn", "cka"}
    P = {n: prepare_features(X) for n, X in feats.items()}
    G = {n: knn_graph(X, 8) for n, X in P.items()}
    for a in feats:
        for b in feats:
            assert m["cknna"].loc[a, b] == pytest.approx(cknna(G[a], G[b]), abs=1e-12)
            assert m["mutual_knn"].loc[a, b] == pytest.approx(mutual_knn(G[a], G[b]), abs=1e-12)
            assert m["cka"].loc[a, b] == pytest.approx(linear_cka(P[a], P[b]), abs=1e-12)
    np.testing.assert_allclose(m["mutual_knn"], m["mutual_knn"].T)
    np.testing.assert_allclose(m["cka"], m["cka"].T)
    m2 = pairwise_matrices(feats, k=8, graphs={n: knn_graph(P[n], 12) for n in feats})
    pd.testing.assert_frame_equal(m2["cknna"], m["cknna"])


def test_dendrogram_groups_related_models():
    order = dendrogram_order(pairwise_matrices(_models(), k=8)["cknna"])
    assert sorted(order) == ["a1", "a2", "b1", "b2"]
    assert {order[0], order[1]} in ({"a1", "a2"}, {"b1", "b2"})


def test_errors():
    feats = _models()
    feats["b2"] = feats["b2"][:-1]
    with pytest.raises(DataError, match="different numbers"):
        pairwise_matrices(feats)
    bad = pd.DataFrame([[1.0, np.nan], [np.nan, 1.0]], index=["x", "y"], columns=["x", "y"])
    assert dendrogram_order(bad) == ["x", "y"]
    with pytest.raises(DataError, match="same models"):
        dendrogram_order(pd.DataFrame(np.eye(3), index=list("abc"), columns=list("acb")))
