"""Exact k-nearest-neighbour graphs and their on-disk cache."""

from benchmark.knn.cache import cached_knn_graph
from benchmark.knn.graph import (
    BlockVisitor,
    KnnGraph,
    check_matrix,
    euclidean_from_cosine,
    knn_graph,
    knn_graphs,
    prepare_features,
    prepare_for_alignment,
    tie_tolerance,
    tied_fraction,
    topk_rows,
)

__all__ = [
    "BlockVisitor",
    "KnnGraph",
    "cached_knn_graph",
    "check_matrix",
    "euclidean_from_cosine",
    "knn_graph",
    "knn_graphs",
    "prepare_features",
    "prepare_for_alignment",
    "tie_tolerance",
    "tied_fraction",
    "topk_rows",
]
