"""Embedding extraction and its content-addressed, resumable on-disk cache."""

from benchmark.embeddings.cache import EmbeddingStore, Embeddings, cache_key, cache_root
from benchmark.embeddings.extract import (
    ExtractResult,
    compute_shard,
    extract,
    key_fields,
    plan_batches,
    plan_shards,
    store_for,
)

__all__ = [
    "EmbeddingStore", "Embeddings", "ExtractResult", "cache_key", "cache_root", "compute_shard", "plan_shards",
    "extract", "key_fields", "plan_batches", "store_for",
]
