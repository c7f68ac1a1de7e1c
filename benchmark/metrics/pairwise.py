"""The one pairwise alignment path: model x model matrices on one task (pure: arrays in, DataFrames out).

Used by `matteralign compare`, the leaderboard's CKNNA matrices and dendrograms, the report's permutation
null and stage 2 of a run. Every model's features are prepared with `prepare_for_alignment` (the pipeline's
preparation, including its sparse-feature rule) and its cosine kNN graph is read from the kNN cache when a
folder and the model's embedding cache key are given, so pairwise CKNNA(model, reference) is the child run's
`cknna_to_ref`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from benchmark.errors import DataError
from benchmark.knn import KnnGraph, cached_knn_graph, knn_graph, prepare_for_alignment
from benchmark.metrics.cka import linear_cka
from benchmark.metrics.knn_alignment import cknna, mutual_knn

MATRICES = ("cknna", "mutual_knn", "cka")


@dataclass(frozen=True)
class Prepared:
    """One model's alignment-ready features, its cosine kNN graph, and the preparation note (or None)."""

    features: np.ndarray
    graph: KnnGraph
    note: str | None


def graph_path(knn_dir: Path, cache_key: str) -> Path:
    """Where the cosine alignment graph of the embedding with this cache key lives in the kNN cache."""
    return Path(knn_dir) / f"{cache_key}-cosine.npz"


def euclidean_graph_path(knn_dir: Path, cache_key: str) -> Path:
    """Where the euclidean graph of the embedding's raw features (TwoNN / MLE, as the metric contract defines
    them) lives in the kNN cache."""
    return Path(knn_dir) / f"{cache_key}-euclidean.npz"


def prepare(features: np.ndarray, k: int, knn_dir: Path | None = None, cache_key: str | None = None) -> Prepared:
    """`prepare_for_alignment` then the cosine top-k graph, cached under knn_dir when a cache key is given.

    Raises DataError (naming the rows) for features with no usable direction, e.g. all-zero rows.
    """
    prepared, note = prepare_for_alignment(np.asarray(features, dtype=np.float64))
    if knn_dir is not None and cache_key:
        graph = cached_knn_graph(prepared, k, "cosine", graph_path(knn_dir, cache_key))
    else:
        graph = knn_graph(prepared, k, "cosine")
    return Prepared(prepared, graph, note)


def pairwise_matrices(
    features: dict[str, np.ndarray],
    k: int = 10,
    knn_dir: Path | None = None,
    cache_keys: dict[str, str] | None = None,
    prepared: dict[str, Prepared] | None = None,
) -> dict[str, pd.DataFrame]:
    """"cknna", "mutual_knn" and "cka" matrices over every ordered pair of models.

    Features are the raw per-model embeddings of the same samples in the same order (checked by count here;
    by id upstream). Entry [a, b] is metric(a, b): mutual_knn and cka are symmetric; cknna is computed for
    both orders because its row masks make it slightly asymmetric. A model whose features cannot be prepared
    raises a DataError naming it. Cost: one graph per model (cached), then O(n k) per pair for the kNN
    metrics and O(n d^2) for CKA.
    """
    names = list(features)
    if not names:
        raise DataError("pairwise_matrices needs at least one model")
    sizes = {name: np.asarray(X).shape[0] for name, X in features.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"models embed different numbers of samples: {sizes}")
    prep = dict(prepared or {})
    keys = cache_keys or {}
    for name in names:
        if name not in prep:
            try:
                prep[name] = prepare(features[name], k, knn_dir, keys.get(name))
            except DataError as exc:
                raise DataError(f"model {name!r}: {exc}") from None
        elif prep[name].graph.n != sizes[name]:
            raise DataError(f"the given kNN graph of {name!r} has {prep[name].graph.n} points, its features {sizes[name]}")
    out = {m: pd.DataFrame(np.nan, index=names, columns=names) for m in MATRICES}
    for i, a in enumerate(names):
        for b in names[i:]:
            ga, gb = prep[a].graph, prep[b].graph
            out["cknna"].loc[a, b] = cknna(ga, gb, k)
            out["cknna"].loc[b, a] = cknna(gb, ga, k)
            out["mutual_knn"].loc[a, b] = out["mutual_knn"].loc[b, a] = mutual_knn(ga, gb, k)
            out["cka"].loc[a, b] = out["cka"].loc[b, a] = linear_cka(prep[a].features, prep[b].features)
    return out


def dendrogram_order(cknna_df: pd.DataFrame) -> list[str]:
    """Model names in the leaf order of average-linkage clustering on 1 - CKNNA (symmetrised
    as the mean of both orders, clipped to >= 0, zero diagonal)."""
    names = list(cknna_df.index)
    if list(cknna_df.columns) != names:
        raise DataError("the CKNNA matrix must have the same models, in the same order, as rows and columns")
    if len(names) < 3:
        return names
    S = cknna_df.to_numpy(dtype=float)
    if not np.isfinite(S).all():
        raise DataError("the CKNNA matrix has NaN entries; cannot cluster models")
    D = np.clip(1.0 - (S + S.T) / 2.0, 0.0, None)
    np.fill_diagonal(D, 0.0)
    return [names[i] for i in leaves_list(linkage(squareform(D, checks=False), method="average"))]


def ordered(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix in dendrogram order (similar models next to each other); as given if it has a NaN."""
    if not np.isfinite(matrix.to_numpy(dtype=float)).all():
        return matrix
    order = dendrogram_order(matrix)
    return matrix.loc[order, order]


def top_pairs(matrix: pd.DataFrame, n: int) -> list[tuple[str, str, float]]:
    """The n most similar distinct pairs (upper triangle), ties broken by the names."""
    names = list(matrix.index)
    pairs = [(names[i], names[j], float(matrix.iloc[i, j]))
             for i in range(len(names)) for j in range(i + 1, len(names))]
    pairs = [p for p in pairs if np.isfinite(p[2])]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))[:n]
