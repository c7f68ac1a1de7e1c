"""benchmark.metrics.pairwise: pairwise matrices and dendrogram order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.metrics.pairwise import dendrogram_order, pairwise_matrices
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


def test_matrices_match_single_calls(tmp_path):
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
    keys = {n: f"key-{n}" for n in feats}
    m2 = pairwise_matrices(feats, k=8, knn_dir=tmp_path, cache_keys=keys)
    pd.testing.assert_frame_equal(m2["cknna"], m["cknna"])
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted(f"key-{n}-cosine.npz" for n in feats)
    m3 = pairwise_matrices(feats, k=8, knn_dir=tmp_path, cache_keys=keys)  # read back from the graph cache
    pd.testing.assert_frame_equal(m3["cknna"], m["cknna"])


def _fingerprints(n: int, bits: int = 2048, on: int = 30, seed: int = 1) -> np.ndarray:
    """Morgan-like bit vectors: ~1.5% of bits set, so the 0.95 quantile of |x| of every row is 0."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, bits))
    for i in range(n):
        X[i, rng.choice(bits, size=on, replace=False)] = 1.0
    return X


def test_sparse_fingerprint_model_in_the_matrices():
    """A sparse fingerprint (clipping would zero every row) is prepared without clipping, as in the pipeline."""
    from benchmark.knn import prepare_for_alignment

    feats = _models()
    feats["morgan"] = _fingerprints(200)
    with pytest.raises(DataError, match="zero after clipping"):
        prepare_features(feats["morgan"])
    m = pairwise_matrices(feats, k=8)
    assert np.isfinite(m["cknna"].to_numpy()).all()
    P, note = prepare_for_alignment(feats["morgan"])
    assert note is not None
    G = knn_graph(P, 8)
    Ga = knn_graph(prepare_features(feats["a1"]), 8)
    assert m["cknna"].loc["morgan", "a1"] == pytest.approx(cknna(G, Ga, 8), abs=1e-12)
    assert len(dendrogram_order(m["cknna"])) == 5


def test_sparse_decision_is_made_on_the_data():
    """A row that is zero before clipping is an error, not a reason to skip clipping."""
    from benchmark.knn import prepare_for_alignment

    X = _models()["a1"]
    X[3] = 0.0
    with pytest.raises(DataError, match="zero"):
        prepare_for_alignment(X)
    dense, note = prepare_for_alignment(_models()["a1"])
    assert note is None
    np.testing.assert_array_equal(dense, prepare_features(_models()["a1"]))


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
