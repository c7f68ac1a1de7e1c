"""Exact k-nearest-neighbour graphs and their on-disk cache."""

from benchmark.knn.cache import cached_knn_graph
from benchmark.knn.graph import (
    KnnGraph,
    check_matrix,
    knn_graph,
    prepare_features,
    prepare_for_alignment,
    tie_tolerance,
    tied_fraction,
    topk_rows,
)

__all__ = [
    "KnnGraph",
    "cached_knn_graph",
    "check_matrix",
    "knn_graph",
    "prepare_features",
    "prepare_for_alignment",
    "tie_tolerance",
    "tied_fraction",
    "topk_rows",
]
