"""Model x model alignment matrices (pure: arrays in, DataFrames out; no MLflow here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from benchmark.errors import DataError
from benchmark.knn.graph import KnnGraph, knn_graph, prepare_features
from benchmark.metrics import cknna, linear_cka, mutual_knn


def pairwise_matrices(
    features: dict[str, np.ndarray],
    k: int = 10,
    graphs: dict[str, KnnGraph] | None = None,
) -> dict[str, pd.DataFrame]:
    """"cknna", "mutual_knn" and "cka" matrices over every ordered pair of models.

    Features are the raw per-model embeddings of the same samples in the same order (checked
    by count here; by id upstream with `check_paired`); each is prepared once
    (`prepare_features`), and its cosine kNN graph computed once unless given in `graphs`.
    Entry [a, b] is metric(a, b): mutual_knn and cka are symmetric; cknna is computed for both
    orders because its row masks make it slightly asymmetric.
    """
    names = list(features)
    if not names:
        raise DataError("pairwise_matrices needs at least one model")
    sizes = {name: np.asarray(X).shape[0] for name, X in features.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"models embed different numbers of samples: {sizes}")
    prepared = {name: prepare_features(X) for name, X in features.items()}
    graphs = dict(graphs or {})
    for name in names:
        if name not in graphs:
            graphs[name] = knn_graph(prepared[name], k)
        elif graphs[name].n != sizes[name]:
            raise DataError(f"the given kNN graph of {name!r} has {graphs[name].n} points, its features {sizes[name]}")
    out = {m: pd.DataFrame(np.nan, index=names, columns=names) for m in ("cknna", "mutual_knn", "cka")}
    for i, a in enumerate(names):
        for b in names[i:]:
            out["cknna"].loc[a, b] = cknna(graphs[a], graphs[b], k)
            out["cknna"].loc[b, a] = cknna(graphs[b], graphs[a], k)
            out["mutual_knn"].loc[a, b] = out["mutual_knn"].loc[b, a] = mutual_knn(graphs[a], graphs[b], k)
            out["cka"].loc[a, b] = out["cka"].loc[b, a] = linear_cka(prepared[a], prepared[b])
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
