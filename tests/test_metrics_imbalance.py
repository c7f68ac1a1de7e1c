"""Information imbalance: dense references from the contract, DADApy where installed (IDCor: test_metrics_idcor.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from benchmark.errors import DataError
from benchmark.metrics import information_imbalance
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


def test_many_models_share_the_reference_pass(monkeypatch):
    """information_imbalances_many: each model's pair equals information_imbalances (and the dense sort),
    from M + 1 distance passes (one per space: the reference's serves every model), not 2 M."""
    import benchmark.metrics.imbalance as imb
    from benchmark.knn import knn_graph, prepare_features
    from benchmark.metrics import information_imbalances, information_imbalances_many

    X, _ = _views(260, 9)
    rng = np.random.default_rng(9)
    models = [np.tanh(X @ rng.standard_normal((5, 4))) + s * rng.standard_normal((260, 4)) for s in (0.05, 0.3, 1.0)]
    spaces = []
    real = imb._Space.__init__

    def spy(self, Z):
        spaces.append(Z)
        real(self, Z)

    monkeypatch.setattr(imb._Space, "__init__", spy)
    for k in (1, 2):
        spaces.clear()
        got = information_imbalances_many(X, models, k, block_size=64)
        assert len(spaces) == len(models) + 1
        for (xy, yx), M in zip(got, models):
            assert (xy, yx) == information_imbalances(X, M, k, block_size=64)
            assert (xy, yx) == (pytest.approx(dense_imbalance(X, M, k), abs=1e-12),
                                pytest.approx(dense_imbalance(M, X, k), abs=1e-12))
    P = prepare_features(X)
    Q = [prepare_features(M) for M in models]
    with_graphs = information_imbalances_many(P, Q, 2, graph_ref=knn_graph(P, 5), graphs=[knn_graph(q, 5) for q in Q])
    assert with_graphs == information_imbalances_many(P, Q, 2)
    assert information_imbalances_many(X, []) == []
    to_ref = imb.imbalances_to_reference(X, [knn_graph(M, 3, metric="euclidean") for M in models], 2, block_size=64)
    assert to_ref == [yx for _, yx in information_imbalances_many(X, models, 2)]
    with pytest.raises(DataError, match=r"graphs\[0\] has n=259"):
        imb.imbalances_to_reference(X, [knn_graph(models[0][:-1], 3)])
    with pytest.raises(DataError, match="graphs has 1 entries for 3 models"):
        information_imbalances_many(X, models, graphs=[None])
    with pytest.raises(DataError, match=r"models\[1\] has 259 rows"):
        information_imbalances_many(X, [models[0], models[1][:-1]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rank_counter_rides_on_the_knn_pass(dtype):
    """Delta(ref -> model) counted on the model's own kNN pass equals the separate pass, ties included."""
    import warnings

    from benchmark.knn import knn_graph, knn_graphs, prepare_features
    from benchmark.metrics.imbalance import RankCounter, information_imbalance_ranks

    rng = np.random.default_rng(7)
    ones = np.ones((700, 1))
    ref = prepare_features(np.hstack([rng.integers(-2, 3, (700, 4)), ones]), clip_quantile=None).astype(dtype)
    Z = prepare_features(np.hstack([rng.integers(-2, 3, (700, 3)), ones]), clip_quantile=None).astype(dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*duplicate an earlier row.*")
        g_ref = knn_graph(ref, 3)
        expected = information_imbalance_ranks(ref, Z, k=2, graph_x=g_ref)
        counter = RankCounter(Z, g_ref.indices[:, :2])
        assert not counter.complete
        knn_graphs(Z, 5, 4, block_size=128, visit=counter)
    assert counter.complete
    np.testing.assert_array_equal(counter.ranks(), expected)
    assert counter.delta() == information_imbalance(ref, Z, k=2, graph_x=g_ref)


def test_rank_counter_refuses_an_incomplete_pass_and_bad_neighbours():
    from benchmark.metrics.imbalance import RankCounter

    Z = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(DataError, match="saw 0 of 1225 pairs"):
        RankCounter(Z, np.zeros((50, 1), dtype=int)).delta()
    with pytest.raises(DataError, match=r"\(n, k\) integer array"):
        RankCounter(Z, np.zeros((49, 1), dtype=int))
    with pytest.raises(DataError, match="outside 0..49"):
        RankCounter(Z, np.full((50, 1), 50))


def test_pipeline_geometry_counts_towards_the_reference_on_its_own_pass(tmp_path, monkeypatch):
    """model_geometry with the reference's neighbours: Delta(ref -> model) from the model's cosine kNN pass (a
    fresh graph) or a counting pass (a cached one) equals information_imbalance; TwoNN reads the raw features'
    euclidean graph (a second pass, without the counter)."""
    import benchmark.knn.graph as kg
    from benchmark.knn import knn_graph, prepare_for_alignment
    from benchmark.metrics import twonn
    from benchmark.pipeline.align import graph_k, model_geometry

    X, Y = _views(120, 5)
    p, p_ref = prepare_for_alignment(X)[0], prepare_for_alignment(Y)[0]
    g_ref = knn_graph(p_ref, graph_k(5, 120))
    expected = information_imbalance(p_ref, p, graph_x=g_ref)
    passes = []
    real = kg._knn_numpy
    monkeypatch.setattr(kg, "_knn_numpy", lambda *a, **kw: passes.append(kw.get("visit")) or real(*a, **kw))
    fresh, err = model_geometry(X, "x", 5, 10, tmp_path, ref_nbrs=g_ref.indices[:, :1])
    assert len(passes) == 2 and passes[0] is not None and passes[1] is None and not err
    assert fresh["info_imbalance_ref_to_model"] == expected
    cached, _ = model_geometry(X, "x", 5, 10, tmp_path, ref_nbrs=g_ref.indices[:, :1])
    assert len(passes) == 2 and cached == fresh
    assert fresh["intrinsic_dimension"] == pytest.approx(twonn(knn_graph(X, 10, metric="euclidean")), rel=1e-12)


def test_align_task_shares_the_reference_pass_and_matches_the_direct_values(tmp_path, monkeypatch):
    """align_task: Delta(ref -> m) from each model's kNN pass, Delta(m -> ref) of all models from one reference
    pass, the same numbers as information_imbalances on the prepared features."""
    import benchmark.metrics.imbalance as imb
    import benchmark.pipeline.align as align
    from benchmark.knn import prepare_for_alignment
    from benchmark.pipeline.executors import LocalExecutor
    from benchmark.pipeline.types import ModelTaskResult, ReferenceChoice, RunConfig

    rng = np.random.default_rng(2)
    Z = rng.standard_normal((90, 3))
    feats = {"ref": np.hstack([Z, 0.2 * rng.standard_normal((90, 3))]),
             "a": np.tanh(Z) @ rng.standard_normal((3, 7)), "b": rng.standard_normal((90, 5))}
    ids = [str(i) for i in range(90)]
    results = [ModelTaskResult(model=m, task="t", status="ok", features=F, ids=ids, cache_key=m)
               for m, F in feats.items()]
    monkeypatch.setattr(align.record, "log_alignment", lambda r, choice: None)
    ref_passes = []
    real = imb.imbalances_to_reference
    monkeypatch.setattr(align, "imbalances_to_reference",
                        lambda *a, **kw: ref_passes.append(len(a[1])) or real(*a, **kw))
    monkeypatch.setattr(align, "information_imbalances", lambda *a, **kw: pytest.fail("a per-model pair of passes"))
    align.align_task(results, ReferenceChoice("ref", "test"), RunConfig(k=5, n_boot=5, n_perm=3), tmp_path,
                     LocalExecutor())
    assert ref_passes == [3]
    p_ref = prepare_for_alignment(feats["ref"])[0]
    for r in results:
        p = prepare_for_alignment(feats[r.model])[0]
        expected = imb.information_imbalances(p_ref, p)
        got = (r.metrics["info_imbalance_ref_to_model"], r.metrics["info_imbalance_model_to_ref"])
        assert got == pytest.approx(expected, abs=1e-15), r.model
        assert "info_imbalance" not in r.errors and "intrinsic_dimension" in r.metrics
