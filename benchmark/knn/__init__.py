"""Exact k-nearest-neighbour graphs and their on-disk cache."""

from benchmark.knn.cache import cached_knn_graph
from benchmark.knn.graph import KnnGraph, knn_graph, prepare_features, prepare_for_alignment

__all__ = ["KnnGraph", "cached_knn_graph", "knn_graph", "prepare_features", "prepare_for_alignment"]
