"""Executors that fill the embedding cache in parallel before the sequential pass of `run_benchmark`.

The sequential pass stays the single place that reports, logs and concatenates; an executor only makes sure
the content-addressed shard files it will look for already exist (see benchmark.executors.ray_executor).
"""
